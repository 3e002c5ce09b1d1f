"""The search API: POST an image to start a job, GET the job to follow it."""

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.urls import reverse
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from . import services
from .models import IndexedImage
from .uploads import UploadRejected, validate_upload


class SearchRequestSerializer(serializers.Serializer):
    image = serializers.FileField(required=False, allow_empty_file=True, help_text="The query image (multipart).")
    image_id = serializers.IntegerField(required=False, help_text="Search with an image of the index instead.")
    from_search = serializers.UUIDField(required=False, help_text="Reuse an earlier search's query image.")
    k = serializers.IntegerField(min_value=1, max_value=settings.IMGSEARCH_MAX_K, default=settings.IMGSEARCH_DEFAULT_K)
    min_score = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.0)
    categories = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, default=list, max_length=50,
        help_text="Only images with one of these tags (repeat the field, or separate with commas).",
    )

    def validate_image(self, image):
        try:
            validate_upload(image, **services.upload_limits())
        except UploadRejected as exc:
            raise ValidationError(exc.message) from None
        return image

    def validate_categories(self, values):
        tags = [t.strip().lower() for value in values for t in value.split(",")]
        return list(dict.fromkeys(t for t in tags if t))

    def validate(self, data):
        given = [name for name in ("image", "image_id", "from_search") if data.get(name) is not None]
        if len(given) != 1:
            raise ValidationError({"image": "Send the query image as the multipart field 'image' "
                                            "(or one of image_id / from_search)."})
        if "image_id" in data:
            data["source_image"] = IndexedImage.objects.filter(id=data.pop("image_id"), status="ready").first()
            if data["source_image"] is None:
                raise ValidationError({"image_id": "No indexed image has this id."})
        if "from_search" in data:
            data["from_job"] = services.visible_jobs(self.context["request"]).filter(id=data.pop("from_search")).first()
            if data["from_job"] is None:
                raise ValidationError({"from_search": "No search of yours has this id."})
        return data


def result_json(request, image, score):
    return {
        "image_id": image.id,
        "score": score,
        "tags": image.tags,
        "image_url": request.build_absolute_uri(image.file.url),
        "thumbnail_url": request.build_absolute_uri(image.thumbnail.url) if image.thumbnail else None,
        "title": image.title,
    }


def job_json(request, job):
    results = [result_json(request, image, score) for image, score in services.search_job_results(job)]
    return {
        "id": str(job.id),
        "status": job.status,
        "error": job.error or None,
        "count": len(results),
        "results": results,
        "timings": job.timings or None,
        "k": job.k,
        "min_score": job.min_score,
        "categories": job.categories,
        "query_name": job.query_name,
        "source_image_id": job.source_image_id,
        "created_at": job.created_at,
    }


@api_view(["POST"])
def search_create(request):
    # Refuse an over-size body before reading it.
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > settings.IMGSEARCH_MAX_UPLOAD_BYTES + 64 * 1024:
        limit = settings.IMGSEARCH_MAX_UPLOAD_BYTES // (1024 * 1024)
        return Response({"detail": f"The upload is too large; the limit is {limit} MB."}, status=status.HTTP_400_BAD_REQUEST)
    serializer = SearchRequestSerializer(data=request.data, context={"request": request})
    serializer.is_valid(raise_exception=True)
    if not request.session.session_key:
        request.session.save()
    job = services.search_job_create(
        **serializer.validated_data,
        owner=request.user if request.user.is_authenticated else None,
        session_key=request.session.session_key,
    )
    url = request.build_absolute_uri(reverse("search-detail", args=[job.id]))
    return Response({"id": str(job.id), "status": job.status, "url": url}, status=status.HTTP_202_ACCEPTED, headers={"Location": url})


@api_view(["GET"])
def search_detail(request, job_id):
    job = get_object_or_404(services.visible_jobs(request), id=job_id)
    return Response(job_json(request, job))


@api_view(["GET"])
def tag_list(request):
    """Every tag in the index with its number of images, most common first."""
    return Response(services.tag_counts())


def exception_handler(exc, context):
    """DRF's handler, with one readable "detail" sentence beside the per-field errors of a 400."""
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, ValidationError) and isinstance(response.data, dict):
        messages = [f"{field}: {errors[0]}" if field != "non_field_errors" else str(errors[0])
                    for field, errors in response.data.items() if isinstance(errors, list) and errors]
        if "image" in response.data and response.data["image"]:
            messages = [str(response.data["image"][0])] + [m for m in messages if not m.startswith("image:")]
        response.data = {"detail": " ".join(messages), **response.data}
    return response

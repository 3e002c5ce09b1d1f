"""The search API: POST an image to start a job, GET the job to follow it."""

from django.conf import settings
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from PIL import Image, UnidentifiedImageError
from redis.exceptions import RedisError
from rest_framework import status
from rest_framework.decorators import api_view, throttle_classes
from rest_framework.exceptions import NotAuthenticated, ValidationError
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle
from rest_framework.views import exception_handler as drf_exception_handler

from . import indexing, jobs, openapi
from .api_params import KEY_PARAMETER, SearchRequestSerializer, SearchWaitSerializer
from .models import SearchJob


def result_json(request, image, score, match, evidence=None):
    return {
        "image_id": image.id,
        "score": score,
        "match": match,
        "evidence": evidence,
        "tags": image.tags,
        "image_url": request.build_absolute_uri(image.file.url),
        "thumbnail_url": request.build_absolute_uri(image.thumbnail.url) if image.thumbnail else None,
        "title": image.title,
    }


def job_json(request, job, key=""):
    results = [result_json(request, *result) for result in jobs.search_job_results(job)]
    return {
        "id": str(job.id),
        "status": job.status,
        "error": job.error or None,
        "count": len(results),
        "results": results,
        "timings": timings_json(job),
        "k": job.k,
        "min_score": job.min_score,
        "categories": job.categories,
        "rerank": job.rerank,
        "region": job.region,
        "query_name": job.query_name,
        "query_image_url": query_image_url(request, job, key),
        "source_image_id": job.source_image_id,
        "created_at": job.created_at,
    }


def timings_json(job):
    """The job's timings; rerank_ms is null where it was not measured (also for jobs stored before re-ranking)."""
    return {**job.timings, "rerank_ms": job.timings.get("rerank_ms")} if job.timings else None


def query_image_url(request, job, key=""):
    """Where the job's owner (or the holder of its key) can see its uploaded image; None for an indexed image."""
    if not job.query_image:
        return None
    return with_key(request.build_absolute_uri(reverse("search-query-image", args=[job.id])), key)


def with_key(url, key):
    return f"{url}?key={key}" if key else url


def job_for(request, job_id):
    """(job, key): the job this request may read, by the key it gives (an anonymous job's) or as its owner; else 404."""
    key = request.query_params.get("key", "")
    job = jobs.keyed_jobs(job_id, key).first()
    if job is None:
        return get_object_or_404(jobs.visible_jobs(request), id=job_id), ""
    return job, key


class _SearchThrottle:
    """Counts only POSTs, the searches started; reads its rate from settings on every request."""

    rate_setting = ""

    def get_rate(self):
        return getattr(settings, self.rate_setting)

    def allow_request(self, request, view):
        if request.method != "POST":
            return True
        try:
            return super().allow_request(request, view)
        except RedisError:  # the counts live in Redis; while it is down, searches are not refused for it
            return True


class SearchUserThrottle(_SearchThrottle, UserRateThrottle):
    """Searches per signed-in user."""

    scope, rate_setting = "search_user", "IMGSEARCH_SEARCH_RATE_USER"

    def get_cache_key(self, request, view):
        return super().get_cache_key(request, view) if request.user.is_authenticated else None


class SearchAnonThrottle(_SearchThrottle, AnonRateThrottle):
    """Searches per anonymous client, by IP address."""

    scope, rate_setting = "search_anon", "IMGSEARCH_SEARCH_RATE_ANON"


@extend_schema(
    methods=["POST"],
    operation_id="search_start",
    request={"multipart/form-data": SearchRequestSerializer},
    summary="Start a search",
    description="Upload a query image (or name an indexed image, or an earlier search to refine) and get a job "
    "to poll. Anyone may search; anonymous searches belong to the browser session that made them, and to whoever "
    "follows the `Location` answered (it carries the search's `key`), so a client without cookies reads its own. "
    "With `wait` (e.g. `?wait=10`) a search that ends within that time is answered at once: 200 with the job.",
    parameters=[SearchWaitSerializer],
    responses={
        200: openapi.SearchJobSerializer,
        202: openapi.JobReferenceSerializer,
        400: openapi.BAD_REQUEST,
        401: openapi.UNAUTHORIZED,
        403: openapi.FORBIDDEN,
        413: openapi.TOO_LARGE,
        429: openapi.THROTTLED,
        503: openapi.BUSY,
    },
    examples=[
        OpenApiExample(
            "Accepted",
            response_only=True,
            status_codes=["202"],
            value={
                "id": "0b7f8f6e-2d5c-4f43-9a57-1c8f1e0f5d21",
                "status": "pending",
                "url": "http://127.0.0.1:8000/api/v1/searches/0b7f8f6e-2d5c-4f43-9a57-1c8f1e0f5d21/",
            },
        )
    ],
)
@extend_schema(
    methods=["GET"],
    operation_id="search_history",
    summary="Your recent searches",
    description="The signed-in user's last 100 searches, newest first, without their results.",
    responses={200: openapi.SearchSummarySerializer(many=True), 401: openapi.UNAUTHORIZED},
)
@api_view(["GET", "POST"])
@throttle_classes([SearchUserThrottle, SearchAnonThrottle])
def search_create(request):
    """POST starts a search (anyone, rate-limited); GET lists the requester's own (signed in)."""
    if request.method == "GET":
        return search_list(request)
    refusal = search_refusal(request)
    if refusal:
        return refusal
    params = SearchWaitSerializer(data=request.query_params)
    params.is_valid(raise_exception=True)
    serializer = SearchRequestSerializer(data=request.data, context={"request": request})
    serializer.is_valid(raise_exception=True)
    if not request.session.session_key:
        request.session.save()
    job = jobs.search_job_create(
        **serializer.validated_data,
        owner=request.user if request.user.is_authenticated else None,
        session_key=request.session.session_key,
    )
    # An anonymous search's Location carries its key: a client without cookies follows it. The body's url stays
    # the plain one, which the page's script adds ?wait= to (the browser has the session cookie).
    key = jobs.job_key(job.id) if job.owner_id is None else ""
    url = request.build_absolute_uri(reverse("search-detail", args=[job.id]))
    headers = {"Location": with_key(url, key)}
    if params.validated_data["wait"]:
        jobs.search_job_wait(job, params.validated_data["wait"])
        if job.status in (SearchJob.Status.DONE, SearchJob.Status.FAILED):
            return Response(job_json(request, job, key), headers=headers)
    return Response(
        {"id": str(job.id), "status": job.status, "url": url}, status=status.HTTP_202_ACCEPTED, headers=headers
    )


def search_refusal(request):
    """A 413 for a body over the upload limit (before reading it), a 503 while the queue is full; else None."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > settings.IMGSEARCH_MAX_UPLOAD_BYTES + 64 * 1024:  # room for the other multipart fields
        limit = settings.IMGSEARCH_MAX_UPLOAD_BYTES // (1024 * 1024)
        return Response(
            {"detail": f"The upload is too large; the limit is {limit} MB."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if jobs.search_queue_full():
        return Response(
            {"detail": "The search queue is full right now; please try again in a few seconds."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    return None


def search_list(request):
    """The signed-in requester's recent searches, newest first, without their results."""
    if not request.user.is_authenticated:
        raise NotAuthenticated("Sign in to see your searches.")
    jobs = SearchJob.objects.filter(owner=request.user).order_by("-created_at")[:100]
    fields = ("status", "created_at", "query_name", "k", "min_score", "categories", "rerank", "source_image_id")
    return Response(
        [
            {
                "id": str(job.id),
                **{f: getattr(job, f) for f in fields},
                "count": len(job.results),
                "url": request.build_absolute_uri(reverse("search-detail", args=[job.id])),
                "query_image_url": query_image_url(request, job),
            }
            for job in jobs
        ]
    )


@extend_schema(
    operation_id="search_get",
    summary="Follow a search",
    parameters=[SearchWaitSerializer, KEY_PARAMETER],
    description="The job's status, and once done its results best first with timings. Ask with `wait` (e.g. "
    "`?wait=10`) to get the answer as soon as the job ends; without it, poll every few hundred ms.",
    responses={
        200: openapi.SearchJobSerializer,
        400: openapi.BAD_REQUEST,
        401: openapi.UNAUTHORIZED,
        404: openapi.NOT_FOUND,
    },
)
@api_view(["GET"])
def search_detail(request, job_id):
    job, key = job_for(request, job_id)
    params = SearchWaitSerializer(data=request.query_params)
    params.is_valid(raise_exception=True)
    if params.validated_data["wait"] and job.status in (SearchJob.Status.PENDING, SearchJob.Status.RUNNING):
        jobs.search_job_wait(job, params.validated_data["wait"])
    return Response(job_json(request, job, key))


# Pillow's name for the stored bytes -> what we send; the client's declared type is never used.
_QUERY_IMAGE_TYPES = {
    "JPEG": ("image/jpeg", "jpg"),
    "MPO": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "GIF": ("image/gif", "gif"),
    "WEBP": ("image/webp", "webp"),
    "BMP": ("image/bmp", "bmp"),
    "TIFF": ("image/tiff", "tiff"),
}


@extend_schema(
    operation_id="search_query_image",
    summary="The uploaded query image",
    description="The image uploaded for a search, to its owner only, with its type read from its bytes.",
    parameters=[KEY_PARAMETER],
    responses={
        (200, "image/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The image."),
        401: openapi.UNAUTHORIZED,
        404: openapi.NOT_FOUND,
    },
)
@api_view(["GET"])
def search_query_image(request, job_id):
    """The uploaded query image of a search, to its owner (or whoever holds its key, or may see all searches)."""
    job, _ = job_for(request, job_id)
    if not job.query_image:
        raise Http404("This search has no uploaded image.")
    try:
        f = job.query_image.open("rb")
    except FileNotFoundError:
        raise Http404("The query image is no longer stored.") from None
    try:
        with Image.open(f) as img:
            content_type, ext = _QUERY_IMAGE_TYPES[img.format]
    except (UnidentifiedImageError, KeyError, OSError):
        f.close()
        raise Http404("The stored query image cannot be shown.") from None
    f.seek(0)
    response = FileResponse(f, content_type=content_type)
    response["Content-Disposition"] = f'inline; filename="query.{ext}"'
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@extend_schema(
    operation_id="tags_list",
    summary="Tags in the index",
    description="Every tag (given or automatic) on an indexed image, with its number of images, most common first.",
    responses={200: openapi.TagCountSerializer(many=True), 401: openapi.UNAUTHORIZED},
)
@api_view(["GET"])
def tag_list(request):
    """Every tag in the index with its number of images, most common first."""
    return Response(indexing.tag_counts())


def first_message(errors):
    """The first message in a field's errors, however nested (lists of a list field's items, dicts)."""
    while isinstance(errors, (list, dict)) and errors:
        errors = next(iter(errors.values())) if isinstance(errors, dict) else errors[0]
    return str(errors)


def exception_handler(exc, context):
    """DRF's handler, with one readable "detail" sentence beside the per-field errors of a 400."""
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, ValidationError) and isinstance(response.data, dict):
        messages = [
            f"{field}: {first_message(errors)}" if field != "non_field_errors" else first_message(errors)
            for field, errors in response.data.items()
            if errors
        ]
        if "image" in response.data and response.data["image"]:
            messages = [str(response.data["image"][0])] + [m for m in messages if not m.startswith("image:")]
        response.data = {"detail": " ".join(messages), **response.data}
    return response

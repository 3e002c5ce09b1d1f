"""What the search API accepts: a search's parameters, the wait, an anonymous search's key (search.api uses them)."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from . import jobs
from .models import IndexedImage
from .uploads import UploadRejected, validate_upload


@extend_schema_field(OpenApiTypes.STR)
class RegionField(serializers.Field):
    """The part of the query image to search: "x,y,width,height" in fractions of the image (jobs.region_parse)."""

    def to_internal_value(self, data):
        try:
            return jobs.region_parse(data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class SearchRequestSerializer(serializers.Serializer):
    image = serializers.FileField(required=False, allow_empty_file=True, help_text="The query image (multipart).")
    image_id = serializers.IntegerField(required=False, help_text="Search with an image of the index instead.")
    from_search = serializers.UUIDField(required=False, help_text="Reuse an earlier search's query image.")
    k = serializers.IntegerField(min_value=1, max_value=settings.IMGSEARCH_MAX_K, default=settings.IMGSEARCH_DEFAULT_K)
    min_score = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.0)
    categories = serializers.ListField(
        child=serializers.CharField(max_length=4000),
        required=False,
        default=list,
        max_length=50,
        help_text="Only images with one of these tags (repeat the field, or separate with commas).",
    )
    rerank = serializers.BooleanField(
        default=True,
        error_messages={"invalid": "Must be true or false."},
        help_text="Look for copies of the query image (cropped, rescaled, re-encoded, blurred, ...) by local "
        'features and signatures and put them first, marked "match": "copy". A little slower.',
    )
    region = RegionField(
        required=False,
        allow_null=True,
        help_text='Search only this part of the image: "x,y,width,height" (e.g. "0.25,0.1,0.5,0.6"), fractions of '
        "the upright image from its top left corner; empty or left out: the whole image. A refined search "
        "(from_search) searches the region it is given, not the earlier one's.",
    )

    def validate_image(self, image):
        try:
            validate_upload(
                image, max_bytes=settings.IMGSEARCH_MAX_UPLOAD_BYTES, max_pixels=settings.IMGSEARCH_MAX_PIXELS
            )
        except UploadRejected as exc:
            raise ValidationError(exc.message) from None
        return image

    def validate_categories(self, values):
        tags = list(dict.fromkeys(t.strip().lower() for value in values for t in value.split(",") if t.strip()))
        if len(tags) > 50 or any(len(t) > 64 for t in tags):
            raise ValidationError("Give at most 50 categories of at most 64 characters each.")
        return tags

    def validate(self, data):
        given = [name for name in ("image", "image_id", "from_search") if data.get(name) is not None]
        if len(given) != 1:
            raise ValidationError(
                {"image": "Send the query image as the multipart field 'image' (or one of image_id / from_search)."}
            )
        if "image_id" in data:
            data["source_image"] = IndexedImage.objects.filter(id=data.pop("image_id"), status="ready").first()
            if data["source_image"] is None:
                raise ValidationError({"image_id": "No indexed image has this id."})
        if "from_search" in data:
            data["from_job"] = jobs.visible_jobs(self.context["request"]).filter(id=data.pop("from_search")).first()
            if data["from_job"] is None:
                raise ValidationError({"from_search": "No search of yours has this id."})
        return data


class SearchWaitSerializer(serializers.Serializer):
    wait = serializers.IntegerField(
        min_value=0,
        max_value=settings.IMGSEARCH_MAX_WAIT_SECONDS,
        default=0,
        help_text="Seconds to wait for a pending or running job to end before answering (0: answer at once). The "
        "answer comes the moment the job ends; when the server is too busy to wait it answers at once.",
    )


KEY_PARAMETER = OpenApiParameter(
    "key",
    str,
    description="The secret of an anonymous search, in the Location its creator was given: with it, a client "
    "without the session cookie reads the search (and its query image).",
)

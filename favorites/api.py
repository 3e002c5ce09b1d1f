"""The favourites API: list, save and remove the requesting user's saved images."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from search import openapi

from . import services


class FavoriteSerializer(serializers.Serializer):
    """The shape of a favourite in responses (documentation only; favorite_json builds it)."""

    id = serializers.IntegerField()
    image_id = serializers.IntegerField()
    note = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    title = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    image_url = serializers.URLField()
    thumbnail_url = serializers.URLField(allow_null=True)


class FavoriteRequestSerializer(serializers.Serializer):
    image_id = serializers.IntegerField(help_text="The indexed image to save.")
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

    def validate(self, data):
        data["image"] = services.ready_image(data.pop("image_id"))
        if data["image"] is None:
            raise serializers.ValidationError({"image_id": "No indexed image has this id."})
        return data


class FavoriteFilterSerializer(serializers.Serializer):
    tag = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


def favorite_json(request, favorite):
    image = favorite.image
    return {
        "id": favorite.id,
        "image_id": image.id,
        "note": favorite.note,
        "created_at": favorite.created_at,
        "title": image.title,
        "tags": image.tags,
        "image_url": request.build_absolute_uri(image.file.url),
        "thumbnail_url": request.build_absolute_uri(image.thumbnail.url) if image.thumbnail else None,
    }


@extend_schema(
    methods=["GET"],
    operation_id="favorites_list",
    summary="Your favourites",
    parameters=[OpenApiParameter("tag", str, description="Only favourites with this tag (given or automatic).")],
    responses={200: FavoriteSerializer(many=True), 400: openapi.BAD_REQUEST, 401: openapi.UNAUTHORIZED},
)
@extend_schema(
    methods=["POST"],
    operation_id="favorites_add",
    summary="Save an image as a favourite",
    description="Saving an image twice is harmless: the second time answers 200 with the existing favourite.",
    request=FavoriteRequestSerializer,
    responses={
        201: FavoriteSerializer,
        200: FavoriteSerializer,
        400: openapi.BAD_REQUEST,
        401: openapi.UNAUTHORIZED,
        403: openapi.FORBIDDEN,
    },
)
@api_view(["GET", "POST"])
@permission_classes([IsAuthenticated])
def favorite_collection(request):
    """GET lists your favourites (?tag= filters); POST saves an image, once (again answers 200)."""
    if request.method == "GET":
        query = FavoriteFilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)  # e.g. a NUL character, which PostgreSQL cannot compare
        favorites = services.favorite_list(request.user, tag=query.validated_data["tag"])
        return Response([favorite_json(request, favorite) for favorite in favorites])
    serializer = FavoriteRequestSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    favorite, created = services.favorite_add(request.user, **serializer.validated_data)
    return Response(favorite_json(request, favorite), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@extend_schema(
    operation_id="favorites_remove",
    summary="Remove a favourite",
    responses={204: None, 401: openapi.UNAUTHORIZED, 403: openapi.FORBIDDEN, 404: openapi.NOT_FOUND},
)
@api_view(["DELETE"])
@permission_classes([IsAuthenticated])
def favorite_detail(request, favorite_id):
    """Remove one of your favourites; anyone else's id is as unknown as a missing one."""
    if not services.favorite_remove(request.user, favorite_id):
        raise NotFound("You have no favourite with this id.")
    return Response(status=status.HTTP_204_NO_CONTENT)

"""What the OpenAPI schema says about responses: their shapes, the error answers, and examples.

The views build their JSON by hand (search.api, favorites.api); these serializers only describe it, for
drf-spectacular. tests/test_api_contract.py fuzzes the live server against the result.
"""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, in a sentence a person understands.")


class JobReferenceSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField(help_text='Always "pending" when the job is created.')
    url = serializers.URLField(help_text="Poll this until status is done or failed.")


class TransformSerializer(serializers.Serializer):
    matrix = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()),
        help_text="2x3: maps a pixel (x, y, 1) of the query searched onto the result's pixels (x', y'), the query "
        "mirrored left to right first where mirrored is true (the matrix then holds the mirroring).",
    )
    query_size = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="[width, height] of the query searched, in its file's upright pixels (its region, where one was given).",
    )
    result_size = serializers.ListField(
        child=serializers.IntegerField(), help_text="[width, height] of the result, upright."
    )
    scale = serializers.FloatField(help_text="Result pixels per query pixel (below 1: the result is smaller).")
    rotation = serializers.FloatField(help_text="Degrees the query is turned in the result, clockwise as seen.")
    mirrored = serializers.BooleanField(help_text="The result shows the query mirrored left to right.")
    outline = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()),
        help_text="Where the query's corners lie in the result, as [x, y] fractions of its width and height (0..1 "
        "inside it): top left, top right, bottom right, bottom left of the query.",
    )


class EvidenceSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(
        ["same picture", "looks alike"], help_text='"same picture" exactly when the result\'s match is "copy".'
    )
    by = serializers.ChoiceField(
        ["identical file", "keypoints", "signature"],
        help_text='"identical file": the very bytes searched with; "keypoints": keypoints that fit one transform '
        '(inliers says how many); "signature": the 16x16 grey thumbnails correlate at 0.95 or more (likeness).',
    )
    inliers = serializers.IntegerField(allow_null=True, help_text="Keypoints that fit the transform, where verified.")
    likeness = serializers.FloatField(allow_null=True, help_text="The signatures' correlation, for by=signature.")
    transform = TransformSerializer(
        required=False,
        help_text='Where the query lies in the result: only for a "same picture" verified by its keypoints (by '
        '"keypoints", or "identical file" with enough of them); left out otherwise.',
    )


class ResultSerializer(serializers.Serializer):
    image_id = serializers.IntegerField()
    score = serializers.FloatField(help_text="Cosine similarity of the embeddings, 0..1 (1: identical).")
    match = serializers.ChoiceField(
        ["copy", "similar"],
        help_text='"copy" (the "Same picture" badge): the very file uploaded (or the indexed image searched with), or '
        "an image whose keypoints fit the query's under one transform (possibly cropped, rescaled, re-encoded, "
        "turned, flipped, recoloured or captioned), distinctly better than any other image's, and which, so mapped, "
        'looks like the query in lightness and colour. "similar": anything else, also a result that leads because '
        "it looks much like the query (its evidence says why) without proof that it is the same picture; always, "
        "for a search without re-ranking.",
    )
    evidence = EvidenceSerializer(
        allow_null=True,
        help_text="Why the result leads as, or looks like, the query's own picture; null for a merely similar one.",
    )
    tags = serializers.ListField(child=serializers.CharField(), help_text="Given tags first, then automatic ones.")
    image_url = serializers.URLField()
    thumbnail_url = serializers.URLField(allow_null=True)
    title = serializers.CharField()


class TimingsSerializer(serializers.Serializer):
    queued_ms = serializers.FloatField(help_text="From the POST until a worker took the job.")
    embed_ms = serializers.FloatField(help_text="Decoding and embedding the query image.")
    query_ms = serializers.FloatField(help_text="The k-NN query in pgvector.")
    rerank_ms = serializers.FloatField(
        allow_null=True,
        help_text="Looking for copies: the signature search and verifying the best candidates "
        "with local features; null when the search ran without re-ranking.",
    )
    total_ms = serializers.FloatField(help_text="From the POST until the results were stored.")


class SearchJobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(["pending", "running", "done", "failed"])
    error = serializers.CharField(allow_null=True, help_text="Why a failed job failed; null otherwise.")
    count = serializers.IntegerField(help_text="Number of results (0 until done).")
    results = ResultSerializer(many=True, help_text="Best first.")
    timings = TimingsSerializer(allow_null=True, help_text="Null until done.")
    k = serializers.IntegerField()
    min_score = serializers.FloatField()
    categories = serializers.ListField(child=serializers.CharField())
    rerank = serializers.BooleanField(help_text="Whether the best candidates were verified as copies (see match).")
    region = serializers.DictField(
        child=serializers.FloatField(),
        allow_null=True,
        help_text='The part of the query image searched: {"x", "y", "width", "height"} in fractions of the upright '
        "image; null: all of it.",
    )
    query_name = serializers.CharField(allow_blank=True, help_text="The uploaded file's name, for display.")
    query_image_url = serializers.URLField(allow_null=True, help_text="The uploaded query image (owner only).")
    source_image_id = serializers.IntegerField(allow_null=True, help_text="Set when searching with an indexed image.")
    created_at = serializers.DateTimeField()


class SearchSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(["pending", "running", "done", "failed"])
    created_at = serializers.DateTimeField()
    query_name = serializers.CharField(allow_blank=True)
    k = serializers.IntegerField()
    min_score = serializers.FloatField()
    categories = serializers.ListField(child=serializers.CharField())
    rerank = serializers.BooleanField()
    source_image_id = serializers.IntegerField(allow_null=True)
    count = serializers.IntegerField()
    url = serializers.URLField()
    query_image_url = serializers.URLField(allow_null=True)


class TagCountSerializer(serializers.Serializer):
    tag = serializers.CharField()
    count = serializers.IntegerField()


def error(description):
    return OpenApiResponse(ErrorSerializer, description=description)


BAD_REQUEST = OpenApiResponse(
    ErrorSerializer,
    description="The request is invalid: `detail` says why, and each invalid field lists its messages.",
    examples=[
        OpenApiExample(
            "Not an image",
            value={
                "detail": "This file is not an image (or its format is not supported). Supported formats: JPEG, PNG, GIF, WebP, BMP, TIFF.",
                "image": [
                    "This file is not an image (or its format is not supported). Supported formats: JPEG, PNG, GIF, WebP, BMP, TIFF."
                ],
            },
        ),
        OpenApiExample(
            "k out of range",
            value={
                "detail": "k: Ensure this value is less than or equal to 100.",
                "k": ["Ensure this value is less than or equal to 100."],
            },
        ),
    ],
)
UNAUTHORIZED = error(
    "Credentials are missing where an account is needed, or the token is invalid. "
    "Send `Authorization: Token <key>` (create one on the account page)."
)
FORBIDDEN = error(
    "A signed-in browser session sent a state-changing request without its CSRF token (`X-CSRFToken` header)."
)
NOT_FOUND = error("Nothing with this id is visible to you: it does not exist or belongs to someone else.")
TOO_LARGE = error("The request body is larger than the upload limit (IMGSEARCH_MAX_UPLOAD_MB); it was not read.")
THROTTLED = error("Too many searches started: wait the number of seconds in the `Retry-After` header.")
BUSY = error("The search queue is full (or the database is unavailable): try again after `Retry-After` seconds.")


# Where a response's id leads next: clients (and Schemathesis' stateful phase) can follow these.
LINKS = {
    ("/api/v1/searches/", "post", "202"): {
        "FollowSearch": {"operationId": "search_get", "parameters": {"job_id": "$response.body#/id"}},
        "QueryImage": {"operationId": "search_query_image", "parameters": {"job_id": "$response.body#/id"}},
    },
    ("/api/v1/favorites/", "post", "201"): {
        "RemoveFavourite": {"operationId": "favorites_remove", "parameters": {"favorite_id": "$response.body#/id"}}
    },
}


def add_links(result, generator, request, public):
    """drf-spectacular post-processing hook: add the OpenAPI links above to the schema."""
    for (path, method, code), links in LINKS.items():
        response = result.get("paths", {}).get(path, {}).get(method, {}).get("responses", {}).get(code)
        if response is not None:
            response["links"] = links
    return result

"""The duplicate finder (issue 30): its runs, the pairs they verified, and the pairs people said are not the same
picture (search/duplicates.py)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("search", "0014_searchjob_region"), migrations.swappable_dependency(settings.AUTH_USER_MODEL)]

    operations = [
        migrations.CreateModel(
            name="DuplicateRun",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("only_new", models.BooleanField(default=True)),
                (
                    "status",
                    models.CharField(
                        choices=[("queued", "queued"), ("running", "running"), ("done", "done"), ("failed", "failed")],
                        db_index=True,
                        default="queued",
                        max_length=10,
                    ),
                ),
                ("model_key", models.CharField(blank=True, max_length=120)),
                ("after_id", models.BigIntegerField(default=0)),
                ("up_to_id", models.BigIntegerField(default=0)),
                ("cursor_id", models.BigIntegerField(default=0)),
                ("total", models.PositiveIntegerField(default=0)),
                ("done", models.PositiveIntegerField(default=0)),
                ("failed", models.PositiveIntegerField(default=0)),
                ("pairs_found", models.PositiveIntegerField(default=0)),
                ("error", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                (
                    "collection",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="search.collection",
                    ),
                ),
                (
                    "started_by",
                    models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL
                    ),
                ),
            ],
            options={
                "verbose_name": "duplicate finder run",
                "verbose_name_plural": "duplicate finder",
                "ordering": ["-created_at"],
            },
        ),
        migrations.CreateModel(
            name="DistinctPair",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("decided_at", models.DateTimeField(auto_now_add=True)),
                (
                    "decided_by",
                    models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL
                    ),
                ),
                (
                    "image_a",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="search.indexedimage"
                    ),
                ),
                (
                    "image_b",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="search.indexedimage"
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("image_a", "image_b"), name="one_distinct_pair"),
                    models.CheckConstraint(
                        condition=models.Q(("image_a__lt", models.F("image_b"))), name="distinct_pair_ordered"
                    ),
                ]
            },
        ),
        migrations.CreateModel(
            name="DuplicatePair",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("inliers", models.PositiveIntegerField()),
                ("found_at", models.DateTimeField(auto_now_add=True)),
                (
                    "image_a",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="search.indexedimage"
                    ),
                ),
                (
                    "image_b",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="search.indexedimage"
                    ),
                ),
                (
                    "run",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="search.duplicaterun",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("image_a", "image_b"), name="one_duplicate_pair"),
                    models.CheckConstraint(
                        condition=models.Q(("image_a__lt", models.F("image_b"))), name="duplicate_pair_ordered"
                    ),
                ]
            },
        ),
    ]

from django.db import migrations


class Migration(migrations.Migration):
    """SIFT descriptors do not compress: PostgreSQL's pglz spent CPU on every row for nothing (bench/indexing.py)."""

    dependencies = [("search", "0004_projections_local_features_rerank")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE search_localfeatures ALTER COLUMN data SET STORAGE EXTERNAL",
            "ALTER TABLE search_localfeatures ALTER COLUMN data SET STORAGE EXTENDED",
        ),
    ]

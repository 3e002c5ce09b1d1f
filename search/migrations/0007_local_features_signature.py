import pgvector.django
from django.db import migrations

# The signatures' own HNSW index (inner product: they are unit vectors, or zero for a flat picture, which then
# matches nothing). Built as rows arrive: at 256 dimensions an insert costs little (bench/indexing.py measures
# the pipeline with it), and a search looks for the best match in the whole index (search/knn.py).
CREATE = ("CREATE INDEX IF NOT EXISTS localfeatures_signature_hnsw ON search_localfeatures "
          "USING hnsw (signature vector_ip_ops)")
DROP = "DROP INDEX IF EXISTS localfeatures_signature_hnsw"


class Migration(migrations.Migration):
    dependencies = [("search", "0006_search_job_end_notify")]

    operations = [
        migrations.AddField(
            model_name="localfeatures",
            name="signature",
            field=pgvector.django.VectorField(blank=True, dimensions=256, null=True),
        ),
        migrations.RunSQL(CREATE, DROP),
    ]

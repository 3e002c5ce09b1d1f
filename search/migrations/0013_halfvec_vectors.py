"""Vectors stored as halfvec (16-bit floats): the embeddings, the signatures and the visual words, with their HNSW
indexes (issue 29; docs/benchmarks.md: half the table and index, recall@10 unchanged within 0.005).

An index over a column whose type changes would be rebuilt over a cast to the old type, so each HNSW index of these
tables is dropped, the column converted (every row: pgvector rounds each value to the nearest half), and the index
built again over halfvec with the same graph, name and rows (a model's index of a million 384-dimensional vectors
takes some minutes to build again on 2 cores). Reversible the same way.
"""

from django.db import migrations

import search.fields

COLUMNS = (  # table, column, halfvec type, vector type
    ("search_embedding", "vector", "halfvec", "vector"),
    ("search_localfeatures", "signature", "halfvec(256)", "vector(256)"),
    ("search_localfeatures", "words", "halfvec(1920)", "vector(1920)"),
)
# What changes in an index's definition (pg_get_indexdef) from vector to halfvec
TO_HALF = (("::vector(", "::halfvec("), ("vector_cosine_ops", "halfvec_cosine_ops"), ("vector_ip_ops", "halfvec_ip_ops"))


def convert(schema_editor, half):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " AND tablename IN ('search_embedding', 'search_localfeatures') AND indexdef LIKE '%% USING hnsw %%'"
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        for table, column, halfvec, vector in COLUMNS:
            new = halfvec if half else vector
            cursor.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" TYPE {new} USING "{column}"::{new}')
        cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
        for _, definition in indexes:
            for old, new in TO_HALF:
                definition = definition.replace(old, new) if half else definition.replace(new, old)
            cursor.execute(definition)


class Migration(migrations.Migration):
    dependencies = [("search", "0012_searchjob_view_all_searches")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunPython(
                    lambda apps, schema_editor: convert(schema_editor, half=True),
                    lambda apps, schema_editor: convert(schema_editor, half=False),
                )
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="embedding", name="vector", field=search.fields.HalfVectorTextField()
                ),
                migrations.AlterField(
                    model_name="localfeatures",
                    name="signature",
                    field=search.fields.HalfVectorTextField(blank=True, dimensions=256, null=True),
                ),
                migrations.AlterField(
                    model_name="localfeatures",
                    name="words",
                    field=search.fields.HalfVectorTextField(blank=True, dimensions=1920, null=True),
                ),
            ],
        )
    ]

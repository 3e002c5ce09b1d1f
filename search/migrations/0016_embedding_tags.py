"""Each embedding row carries its image's tags (user and automatic), kept equal by two triggers, so that a category
filter is evaluated on the row the vector search reads, and a category can have an HNSW index of its own (a partial
index on the rows carrying it: search/tag_indexes.py).

- BEFORE INSERT on search_embedding: the new row takes its image's tags.
- AFTER UPDATE of an image's tags: its rows take the new ones.

Every write path (the ORM, the indexing pipeline's bulk SQL, the admin) is covered. Rows already there get their tags
in one UPDATE; each row updated would be inserted again into every HNSW index of the table (a graph search each, hours
at a million rows), so those indexes are dropped first and built again in bulk afterwards, with the same definitions,
as migration 0013 does.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import migrations, models

TRIGGERS = """
CREATE FUNCTION search_embedding_tags() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.tags := COALESCE((SELECT i.user_tags || i.auto_tags FROM search_indexedimage AS i WHERE i.id = NEW.image_id),
                         '{}');
    RETURN NEW;
END $$;
CREATE TRIGGER search_embedding_tags BEFORE INSERT OR UPDATE OF image_id ON search_embedding
    FOR EACH ROW EXECUTE FUNCTION search_embedding_tags();
CREATE FUNCTION search_indexedimage_tags() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE search_embedding SET tags = NEW.user_tags || NEW.auto_tags
     WHERE image_id = NEW.id AND tags IS DISTINCT FROM NEW.user_tags || NEW.auto_tags;
    RETURN NULL;
END $$;
CREATE TRIGGER search_indexedimage_tags AFTER UPDATE OF user_tags, auto_tags ON search_indexedimage
    FOR EACH ROW WHEN (OLD.user_tags IS DISTINCT FROM NEW.user_tags OR OLD.auto_tags IS DISTINCT FROM NEW.auto_tags)
    EXECUTE FUNCTION search_indexedimage_tags();
"""
DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS search_indexedimage_tags ON search_indexedimage;
DROP FUNCTION IF EXISTS search_indexedimage_tags();
DROP TRIGGER IF EXISTS search_embedding_tags ON search_embedding;
DROP FUNCTION IF EXISTS search_embedding_tags();
"""


def fill(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " AND tablename = 'search_embedding' AND indexdef LIKE '%% USING hnsw %%'"
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute(
            "UPDATE search_embedding AS e SET tags = i.user_tags || i.auto_tags FROM search_indexedimage AS i"
            " WHERE i.id = e.image_id AND cardinality(i.user_tags || i.auto_tags) > 0"
        )
        cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
        for _, definition in indexes:
            cursor.execute(definition)


class Migration(migrations.Migration):
    dependencies = [("search", "0015_duplicate_finder")]

    operations = [
        migrations.AddField(
            model_name="embedding",
            name="tags",
            field=ArrayField(models.CharField(max_length=64), default=list, editable=False, size=None),
        ),
        migrations.RunSQL(TRIGGERS, DROP_TRIGGERS),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]

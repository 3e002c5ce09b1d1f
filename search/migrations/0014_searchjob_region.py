"""A search job's region: the part of the query image searched (issue 30), null for the whole image."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("search", "0013_halfvec_vectors")]

    operations = [
        migrations.AddField(model_name="searchjob", name="region", field=models.JSONField(blank=True, null=True))
    ]

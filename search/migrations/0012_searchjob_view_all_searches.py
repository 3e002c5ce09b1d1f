from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("search", "0011_float32_vector_text")]

    operations = [
        migrations.AlterModelOptions(
            name="searchjob",
            options={"permissions": [("view_all_searches", "Can see every user's searches and query images")]},
        )
    ]

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ops", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="Console",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
            ],
            options={
                "verbose_name": "ops console",
                "verbose_name_plural": "ops console",
                "permissions": (("view_ops_console", "Can view the ops console"),),
                "managed": False,
                "default_permissions": (),
            },
        ),
    ]

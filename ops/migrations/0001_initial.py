from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="BeatHeartbeat",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "origin",
                    models.CharField(help_text="The beat process.", max_length=255, unique=True),
                ),
                ("first_at", models.DateTimeField(help_text="Its first heartbeat.")),
                ("last_at", models.DateTimeField(help_text="Its latest heartbeat.")),
            ],
            options={
                "ordering": ("-last_at",),
            },
        ),
    ]

from django.apps import AppConfig


class LabelingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "labeling"
    verbose_name = "Labeling: vendors, batches, tasks, annotations, reviews"

    def ready(self) -> None:
        from pipeline import services as pipeline_services

        from .prelabel import task_prelabel_from_prediction

        if task_prelabel_from_prediction not in pipeline_services.PRELABELED_HOOKS:
            pipeline_services.PRELABELED_HOOKS.append(task_prelabel_from_prediction)

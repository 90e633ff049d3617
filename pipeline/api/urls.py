from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
router.register("model-versions", views.ModelVersionViewSet, basename="model-version")
router.register("prelabel-jobs", views.PrelabelJobViewSet, basename="prelabel-job")
router.register("model-predictions", views.PredictionViewSet, basename="model-prediction")
router.register("evaluations", views.EvaluationRunViewSet, basename="evaluation")
router.register("qa-reports", views.QAReportViewSet, basename="qa-report")
router.register("webhooks", views.WebhookViewSet, basename="webhook")
urlpatterns = router.urls

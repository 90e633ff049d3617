from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
router.register("vendors", views.VendorViewSet, basename="vendor")
router.register("batches", views.BatchViewSet, basename="batch")
router.register("tasks", views.TaskViewSet, basename="task")
router.register("annotations", views.AnnotationViewSet, basename="annotation")
router.register("reviews", views.ReviewViewSet, basename="review")
router.register("predictions", views.PredictionViewSet, basename="prediction")
urlpatterns = router.urls

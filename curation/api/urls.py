from rest_framework.routers import DefaultRouter

from . import snapshot_views, views

router = DefaultRouter()
router.register("licences", views.LicenceViewSet, basename="licence")
router.register("sources", views.SourceViewSet, basename="source")
router.register("specs", views.DatasetSpecViewSet, basename="spec")
router.register("categories", views.CategoryViewSet, basename="category")
router.register("images", views.ImageViewSet, basename="image")
router.register("takedowns", views.TakedownViewSet, basename="takedown")
router.register("import-jobs", views.ImportJobViewSet, basename="import-job")
router.register("snapshots", snapshot_views.SnapshotViewSet, basename="snapshot")
router.register("exports", snapshot_views.ExportViewSet, basename="export")
urlpatterns = router.urls

from django.urls import path
from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
router.register("guides", views.GuideViewSet, basename="guide")
router.register("guide-versions", views.GuideVersionViewSet, basename="guide-version")
router.register("guide-examples", views.GuideExampleViewSet, basename="guide-example")
router.register("guide-acknowledgements", views.AcknowledgementViewSet, basename="guide-acknowledgement")
router.register("faq", views.FaqViewSet, basename="faq")
router.register("questions", views.QuestionViewSet, basename="question")
router.register("notifications", views.NotificationViewSet, basename="notification")
router.register("contracts", views.ContractViewSet, basename="contract")
urlpatterns = [
    path("cost-report/", views.CostReportView.as_view(), name="cost-report"),
    path("cost-report/csv/", views.CostReportCsvView.as_view(), name="cost-report-csv"),
    *router.urls,
]

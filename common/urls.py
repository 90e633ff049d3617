"""Pages of people and landing pages. Names carry no namespace: `home` is the
LOGIN_REDIRECT_URL, and underscores keep them apart from the API's router names."""
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("model-team/", views.model_home, name="model_home"),
    path("people/", views.users, name="user_admin"),
    path("people/<int:pk>/token/", views.user_token, name="user_token"),
    path("people/<int:pk>/token/revoke/", views.user_token_revoke, name="user_token_revoke"),
    path("people/<int:pk>/deactivate/", views.user_deactivate, name="user_deactivate"),
    path("people/vendors/", views.vendors, name="vendor_admin"),
]

from tests.apps.django_project import views
from tests.apps.django_project.urls import patterns

handler500 = "tests.apps.django_project.views.server_error"
urlpatterns = patterns(views)

import os

from django.http import JsonResponse
from django.urls import path


def index(request):
    return JsonResponse({
        "site": "blog",
        "host": request.get_host(),
        "secure": request.is_secure(),
        "request_id": request.META.get("HTTP_X_REQUEST_ID", ""),
        "client": request.META.get("REMOTE_ADDR", ""),
        "pid": os.getpid(),
    })


def draft(request, name):
    return JsonResponse({"draft": name})


urlpatterns = [
    path("", index),
    path("drafts/<str:name>", draft),
]

"""A Django project as `django-admin startproject` leaves it: the
generated insecure key in the code, DEBUG on, no hosts listed. Deployed
as it is, it is what doctor's app-key check is for."""

SECRET_KEY = 'django-insecure-3u@k!h0c9$w2^m7q1x8z#v5n6b4r(t)y-e=p+o_l*s&d%f'
DEBUG = True
ALLOWED_HOSTS = []
ROOT_URLCONF = "starter.urls"
INSTALLED_APPS = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES = {}
USE_TZ = True

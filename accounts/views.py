"""Account pages: sign-up, sign-in that keeps a visitor's searches, the account page with its API token, history.

Django's own auth views do the rest (sign-out, password change and reset); see urls.py.
"""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.views import LoginView, RedirectURLMixin
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST
from django.views.generic import FormView
from rest_framework.authtoken.models import Token

from search import jobs

from .services import api_token_create, api_token_revoke, login_keeping_searches, search_history


class SignupForm(UserCreationForm):
    email = forms.EmailField(label=gettext_lazy("Email"), help_text=gettext_lazy("Used only to reset your password."))

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def clean_email(self):
        email = self.cleaned_data["email"]
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(_("An account with this email address already exists."))
        return email


class SignInView(LoginView):
    """Django's sign-in, keeping the searches made before it."""

    redirect_authenticated_user = True

    def form_valid(self, form):
        login_keeping_searches(self.request, form.get_user())
        return redirect(self.get_success_url())


class SignUpView(RedirectURLMixin, FormView):
    """Create an account and sign straight in, keeping the searches made before."""

    form_class = SignupForm
    template_name = "accounts/signup.html"
    next_page = settings.LOGIN_REDIRECT_URL

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated:
            return redirect(self.get_success_url())
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form):
        login_keeping_searches(self.request, form.save())
        messages.success(self.request, _("Welcome! Your account is ready."))
        return redirect(self.get_success_url())


signup = sensitive_post_parameters("password1", "password2")(never_cache(SignUpView.as_view()))


@login_required
@never_cache
def account(request):
    token = Token.objects.filter(user=request.user).first()
    return render(request, "accounts/account.html", {"token": token})


@login_required
@require_POST
@never_cache
def token_create(request):
    """Show the new token once, on this answer only: it is not put in a message or the session."""
    token = api_token_create(request.user)
    return render(request, "accounts/account.html", {"token": token, "new_token": token.key})


@login_required
@require_POST
def token_revoke(request):
    if api_token_revoke(request.user):
        messages.success(request, _("Your API token was revoked; clients using it are refused from now on."))
    return redirect("account")


@login_required
def history(request):
    return render(request, "accounts/history.html", {"jobs": search_history(request.user)})


@login_required
def history_detail(request, job_id):
    """One earlier search with its results, for its owner (staff may open anyone's)."""
    job = get_object_or_404(jobs.visible_jobs(request).select_related("source_image"), id=job_id)
    return render(request, "accounts/history_detail.html", {"job": job, "results": jobs.search_job_results(job)})

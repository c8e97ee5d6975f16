"""Who may sign in with a password, by Supabase Auth's rules (GoTrue's password grant).

Two questions, asked at two moments so that nothing is revealed to someone who does not know
the password:
- before the password counts: a row GoTrue would never let in by password (no password, an
  SSO-only or anonymous user, another audience) is refused exactly like a wrong password;
- after the password matched: an unconfirmed email is refused ("Email not confirmed") unless
  confirmations are off (GOTRUE_MAILER_AUTOCONFIRM, GoTrue's own setting).
Bans and deletions are the directory's verdict (users/directory.py judge()).
"""

from __future__ import annotations

from regcopilot.users.directory import User

AUDIENCE = "authenticated"  # GoTrue's default JWT audience (GOTRUE_JWT_AUD)
EMAIL_NOT_CONFIRMED = "Email not confirmed"  # GoTrue's words (error code email_not_confirmed)


def password_usable(user: User | None) -> bool:
    """The row can sign in with a password at all."""
    return (
        user is not None
        and bool(user.password_hash)
        and not user.is_sso_user
        and not user.is_anonymous
        and user.aud == AUDIENCE
    )


def email_unconfirmed(user: User, autoconfirm: bool) -> bool:
    """Refused after the password matched: confirmations are on and this one is pending."""
    return not autoconfirm and user.email_confirmed_at is None

"""The login portal's HTML pages: the form, the "logged in" page, the note in a CONNECT refusal.

Every value that comes from a request (the ``next`` URL, a user name in an
error, a reason a fault wrote) goes through ``html.escape``; the password is
never an argument here, so it cannot be echoed.
"""

from __future__ import annotations

import html

_STYLE = (
    "body{font-family:sans-serif;max-width:32em;margin:3em auto;color:#222}"
    "form{border:1px solid #ccc;padding:1em 1.5em;border-radius:6px}"
    "label{display:block;margin:.6em 0}input[type=text],input[type=password]{width:100%;padding:.3em}"
    ".error{color:#a00;font-weight:bold}.small{color:#666;font-size:.85em}"
)

LOGIN_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{style}</style></head>
<body>
<h1>{title}</h1>
<p>Sign in to use the web through this proxy ({hop}).</p>
{error}<form id="mitm407-login" method="post" action="{action}">
<input type="hidden" name="next" value="{next}">
<input type="hidden" name="sig" value="{sig}">
<label>User name <input type="text" id="username" name="username" value="{user}" autocomplete="username"></label>
<label>Password <input type="password" id="password" name="password" autocomplete="current-password"></label>
<button type="submit" id="sign-in">Sign in</button>
</form>
<p class="small">{afterwards}</p>
<p class="small">mitm407 login portal (a test double of Zscaler, Blue Coat and Squid portals).
You are seeing this page instead of {wanted} because this proxy has not authenticated you yet.</p>
</body></html>
"""

DONE_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Signed in</title><style>{style}</style></head>
<body><h1>Signed in</h1><p id="mitm407-signed-in">Signed in as <b>{user}</b> for {ttl} seconds ({by}).</p>
{more}</body></html>
"""


def login_page(
    *, hop: str, action: str, next_url: str, sig: str, user: str = "", error: str = "", afterwards: str = ""
) -> str:
    """The form; ``next_url`` and ``sig`` travel in hidden fields, back to ``action`` (a URL of the portal)."""
    return LOGIN_PAGE.format(
        title="Sign in to the proxy",
        style=_STYLE,
        hop=html.escape(hop),
        error=f'<p class="error" id="mitm407-error">{html.escape(error)}</p>\n' if error else "",
        action=html.escape(action, quote=True),
        next=html.escape(next_url, quote=True),
        sig=html.escape(sig, quote=True),
        user=html.escape(user, quote=True),
        afterwards=html.escape(afterwards),
        wanted=f"<code>{html.escape(next_url)}</code>" if next_url else "the page you asked for",
    )


def done_page(*, user: str, ttl: float, by: str, next_url: str = "") -> str:
    """After a login without a page to go back to (or for a client that does not follow the redirect)."""
    more = ""
    if next_url:
        link = html.escape(next_url, quote=True)
        more = f'<p>Continue to <a id="mitm407-next" href="{link}">{html.escape(next_url)}</a>.</p>'
    return DONE_PAGE.format(style=_STYLE, user=html.escape(user), ttl=f"{ttl:g}", by=html.escape(by), more=more)

"""The few things only the browser can do, as JavaScript run through ``rx.call_script``.

Signing in must happen in the browser: the session cookie is HttpOnly, so only a response to the browser's
own request can set it, and passkeys live in the browser's authenticator (``navigator.credentials``). Each
function here is a self-contained async arrow function; ``call(...)`` builds the call with JSON-encoded
arguments (never string-pasted), and the function's result comes back to the state's callback.

Passwords typed on /login go from the page straight to ``/api/auth/*``: the script reads the form fields, so
the password never passes through the Reflex state or its websocket. After a sign-in or sign-out the page is
loaded anew, so the dashboard's websocket reconnects with the new cookie (see ``ui_reflex.session``).
"""

from __future__ import annotations

import json
from typing import Any

import reflex as rx

_HELPERS = r"""
const b64uDecode = (s) => {
  const text = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4));
  return Uint8Array.from(text, (c) => c.charCodeAt(0)).buffer;
};
const b64uEncode = (buffer) => {
  if (!buffer) return null;
  let text = '';
  new Uint8Array(buffer).forEach((b) => { text += String.fromCharCode(b); });
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
};
const csrf = () => {
  const found = document.cookie.match(/(?:^|;\s*)switchyard_csrf=([^;]*)/);
  return found ? decodeURIComponent(found[1]) : '';
};
const post = async (path, body) => {
  const response = await fetch(path, {
    method: 'POST', credentials: 'same-origin',
    headers: {'content-type': 'application/json', 'x-csrf-token': csrf()},
    body: JSON.stringify(body ?? {}),
  });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    let message = (data && (data.detail || data.message)) || response.statusText || 'request failed';
    if (data && Array.isArray(data.extra)) {
      const details = data.extra.map((e) => e && e.message).filter(Boolean);
      if (details.length) message += ': ' + details.join('; ');
    }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return data;
};
// a new sign-in state starts a new dashboard state: forget this tab's Reflex session (its token lives here)
const freshTab = () => { try { window.sessionStorage.clear(); } catch (e) { /* storage disabled */ } };
const safeNext = (next) => (typeof next === 'string' && next.startsWith('/') && !next.startsWith('//')) ? next : '/';
const failure = (e) => ({ok: false, status: e.status || 0, message: (e && e.name === 'NotAllowedError')
  ? 'The passkey prompt was cancelled or timed out.' : String((e && e.message) || e)});
"""

PASSWORD_SIGN_IN = (
    "async (mode, next) => {"
    + _HELPERS
    + r"""
  const username = document.getElementById('login-username').value;
  const password = document.getElementById('login-password').value;
  try {
    await post('/api/auth/' + (mode === 'signup' ? 'signup' : 'login'), {username, password});
  } catch (e) { return failure(e); }
  freshTab();
  window.location.assign(safeNext(next));
  return {ok: true, status: 200, message: ''};
}"""
)
"""Sign in (``mode='login'``) or create the first account (``'signup'``) with the form's fields, then go on."""

PASSKEY_SIGN_IN = (
    "async (username, next) => {"
    + _HELPERS
    + r"""
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return {ok: false, status: 0, message: 'This browser cannot use passkeys here (they need HTTPS or localhost).'};
  }
  username = username ?? ((document.getElementById('login-username') || {}).value || '');
  try {
    const start = await post('/api/auth/passkeys/login/options', username ? {username} : {});
    const options = start.publicKey;
    options.challenge = b64uDecode(options.challenge);
    options.allowCredentials = (options.allowCredentials || []).map((c) => ({...c, id: b64uDecode(c.id)}));
    const credential = await navigator.credentials.get({publicKey: options});
    const r = credential.response;
    await post('/api/auth/passkeys/login/verify', {ceremony: start.ceremony, credential: {
      id: credential.id, rawId: b64uEncode(credential.rawId), type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      response: {clientDataJSON: b64uEncode(r.clientDataJSON), authenticatorData: b64uEncode(r.authenticatorData),
                 signature: b64uEncode(r.signature), userHandle: b64uEncode(r.userHandle)},
    }});
  } catch (e) { return failure(e); }
  freshTab();
  window.location.assign(safeNext(next));
  return {ok: true, status: 200, message: ''};
}"""
)
"""Sign in with a passkey, then go on: limited to `username`'s passkeys (null: the username typed on the page,
if any), else any passkey the authenticator holds for this site."""

PASSKEY_REGISTER = (
    "async (name) => {"
    + _HELPERS
    + r"""
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return {ok: false, status: 0, message: 'This browser cannot create passkeys here (they need HTTPS or localhost).'};
  }
  try {
    const start = await post('/api/auth/passkeys/register/options', {});
    const options = start.publicKey;
    options.challenge = b64uDecode(options.challenge);
    options.user = {...options.user, id: b64uDecode(options.user.id)};
    options.excludeCredentials = (options.excludeCredentials || []).map((c) => ({...c, id: b64uDecode(c.id)}));
    const credential = await navigator.credentials.create({publicKey: options});
    const r = credential.response;
    await post('/api/auth/passkeys/register/verify', {ceremony: start.ceremony, name, credential: {
      id: credential.id, rawId: b64uEncode(credential.rawId), type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      response: {clientDataJSON: b64uEncode(r.clientDataJSON), attestationObject: b64uEncode(r.attestationObject),
                 transports: r.getTransports ? r.getTransports() : []},
    }});
  } catch (e) { return failure(e); }
  return {ok: true, status: 201, message: ''};
}"""
)
"""Register a new passkey for the signed-in user under `name`."""

SIGN_OUT = (
    "async () => {"
    + _HELPERS
    + r"""
  try { await post('/api/auth/logout', {}); } catch (e) { /* an expired session is signed out already */ }
  freshTab();
  window.location.assign('/login');
  return {ok: true};
}"""
)
"""End the session (server side and its cookies) and go to /login."""


def call(function: str, *args: Any, callback: Any = None) -> rx.event.EventSpec:
    """``rx.call_script`` running `function` with JSON-encoded `args`; its result goes to `callback`."""
    arguments = ", ".join(json.dumps(arg) for arg in args)
    return rx.call_script(f"({function})({arguments})", callback=callback)


SELECT_LINE = r"""(elementId, line) => {
  const area = document.getElementById(elementId);
  if (!area) return;
  const lines = area.value.split('\n');
  const index = Math.max(0, Math.min(line, lines.length) - 1);
  const start = lines.slice(0, index).reduce((n, text) => n + text.length + 1, 0);
  area.focus();
  area.setSelectionRange(start, start + (lines[index] || '').length);
  const lineHeight = parseFloat(getComputedStyle(area).lineHeight) || 20;
  const scroller = area.closest('[data-scroll]') || area;
  scroller.scrollTop = Math.max(0, index * lineHeight - scroller.clientHeight / 3);
}"""
"""Put the caret on (and select) line `line` of the textarea `elementId`, scrolled into view."""

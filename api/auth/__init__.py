"""Dashboard sign-in: accounts, password and passkey sign-in, sessions, CSRF, and the admin guard.

Who may call the admin API (`/api/*`, `/running`, `/logs*`, and `/metrics` when protected):

* a browser with a session cookie (signed in with a password or a passkey); its state-changing
  calls must echo the session's CSRF token in `x-csrf-token`;
* automation with an admin API key in `Authorization: Bearer …` or `x-api-key`: the static
  `SWITCHYARD_ADMIN_TOKEN`, or a database key with the admin scope (`Runtime.authenticate_admin_key`).
"""

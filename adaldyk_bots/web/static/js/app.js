// Adaldyk workspace: the little script every page shares. Pages add their own behaviour in their
// templates; state-changing requests from scripts carry the X-CSRF-Token header (htmx: <body hx-headers>).
"use strict";
window.adaldyk = {
  csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  },
  // fetch() with the CSRF header, for scripts that post without htmx.
  post(url, body) {
    return fetch(url, { method: "POST", body, headers: { "X-CSRF-Token": this.csrfToken() }, credentials: "same-origin" });
  },
};

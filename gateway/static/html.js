// The wall's one way to put data into HTML (issue 24). Load it before the script that uses it.
//
//   setHTML(el, html`<td class="c-calls" title="${reason}">${doc.today.calls}</td>`)
//
// html`…` escapes every value interpolated into it, whatever its type (& < > " ' ` become
// entities), for element text and for attribute values in double quotes; what goes in unescaped is
// only the result of another html`…`, or an array of them (joined as they are), or "". Fragments
// are joined by nesting (html`${[a, b]}`), never with `+`: a fragment refuses to become a string,
// so markup cannot silently turn into text or text into markup.
//
// setHTML(el, fragment) is the wall's only way to set innerHTML. The page's Content-Security-Policy
// requires Trusted Types (Chromium): the browser refuses any other innerHTML assignment, and runs no
// script but /static/*.js (no inline script, no event handler attribute).
//
// own(table, key) looks a key up in a constant table without reaching Object.prototype (a level of
// "constructor" must not find a function).
//
// Not for URLs (href, src: no scheme check), nor for unquoted attributes, <script> or <style>:
// the wall has none of those with data in them, and a new one must not either.
"use strict";

const {html, setHTML, own} = (() => {
  const ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;"};
  const escape = (value) => String(value == null ? "" : value).replace(/[&<>"'`]/g, (c) => ESCAPES[c]);

  class Fragment {
    constructor(markup) { this.markup = markup; }
    toString() { throw new TypeError("an html`…` fragment joins others as html`${[a, b]}`, not with +"); }
  }

  const part = (value) => value instanceof Fragment ? value.markup
    : Array.isArray(value) ? value.map(part).join("") : escape(value);

  function html(strings, ...values) {
    let markup = strings[0];
    for (let i = 0; i < values.length; i++) markup += part(values[i]) + strings[i + 1];
    return new Fragment(markup);
  }

  // Trusted Types: the one policy the page's CSP allows; where the browser has none, a plain string
  const policy = window.trustedTypes ? window.trustedTypes.createPolicy("zw-html", {createHTML: (s) => s}) : null;

  function setHTML(element, fragment) {
    if (!(fragment instanceof Fragment)) throw new TypeError("setHTML takes an html`…` fragment");
    element.innerHTML = policy ? policy.createHTML(fragment.markup) : fragment.markup;
  }

  const own = (table, key) => Object.prototype.hasOwnProperty.call(table, key) ? table[key] : undefined;

  return {html, setHTML, own};
})();

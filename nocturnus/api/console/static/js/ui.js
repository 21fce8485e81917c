// Pieces every view shares: running an action with its error shown, confirmations,
// the current target, and the view's heading.

import { ApiError, session } from "./api.js";
import { h, message, replace } from "./dom.js";

const BUSY_AFTER_MS = 300;

/** The database, tenant and scope the user picked (scope "" means every scope). */
export function target() {
  const t = session.target;
  return { database: t.database || "default", tenant: t.tenant || "", scope: t.scope || "" };
}

/** The scope for a request body: the picked scope, or null for every scope. */
export function scopeOrNull() {
  return target().scope || null;
}

/** Explain an error to the user: the API's envelope, never a stack. */
export function describe(error) {
  if (error instanceof ApiError) return error.describe();
  return error && error.message ? error.message : String(error);
}

/**
 * Run ``action`` and show its failure (or ``done``'s text) in ``status``.
 * Returns the action's result, or undefined when it failed.
 */
export async function attempt(status, action, done) {
  // Only a slow call says it is working, so quick ones and polling do not flicker.
  const slow = setTimeout(() => replace(status, message("busy", "Working…")), BUSY_AFTER_MS);
  try {
    const result = await action();
    clearTimeout(slow);
    // A note left by the action that caused this one (a reload after a delete) stays.
    if (status.querySelector(".busy, .error")) replace(status);
    if (done) {
      const note = typeof done === "function" ? done(result) : done;
      if (note) replace(status, message("note", note));
    }
    return result;
  } catch (error) {
    clearTimeout(slow);
    replace(status, message("error", describe(error)));
    return undefined;
  }
}

/** A region where a form's outcome is shown (announced to screen readers). */
export function statusRegion() {
  return h("div", { className: "status", "aria-live": "polite" });
}

/** The view's heading, focused when the view opens so keyboard users land on it. */
export function heading(text, intro) {
  return [h("h2", { tabIndex: -1, className: "view-title" }, text),
    intro ? h("p", { className: "intro" }, intro) : null];
}

/**
 * Ask the user to confirm a destructive action with the page's dialog.
 *
 * With ``typed``, the user must type that exact text (a database or tenant name)
 * before the confirm button does anything.
 */
export function confirmAction({ title, text, typed, action = "Delete" }) {
  const dialog = document.getElementById("confirm");
  const form = document.getElementById("confirm-form");
  const input = document.getElementById("confirm-input");
  const typedBox = document.getElementById("confirm-typed");
  const ok = document.getElementById("confirm-ok");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  ok.textContent = action;
  typedBox.hidden = !typed;
  input.value = "";
  if (typed) {
    typedBox.querySelector("label").textContent = `Type ${typed} to confirm`;
    input.required = true;
    input.pattern = typed.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
  } else {
    input.required = false;
    input.removeAttribute("pattern");
  }
  return new Promise((resolve) => {
    function onSubmit(event) {
      event.preventDefault();
      const chosen = event.submitter ? event.submitter.value : "cancel";
      if (chosen === "ok" && typed && input.value !== typed) {
        input.focus();
        return;
      }
      dialog.close(chosen);
    }
    function onClose() {
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("close", onClose);
      resolve(dialog.returnValue === "ok");
    }
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("close", onClose);
    dialog.returnValue = "";
    dialog.showModal();
    (typed ? input : form.querySelector("button[value=cancel]")).focus();
  });
}

// paddyclf: a little plain JavaScript over server-rendered pages (the forms also work without it).
"use strict";
document.documentElement.classList.add("js");

// The page's language: the server puts this script's translated messages in <script id="messages">
// (the same gettext catalogue as the pages; `make messages` extracts the _() calls below).
const MESSAGES = JSON.parse(document.getElementById("messages")?.textContent || "{}");
function _(message, values = {}) {
  const text = MESSAGES[message] || message;
  return text.replace(/%\((\w+)\)s/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

// Diagnose: upload each photo on its own request and show the card the server renders for it,
// in place of a placeholder (the newest selection on top, in the order the photos were chosen).
function placeholder(file) {
  const pending = document.createElement("article");
  pending.className = "card pending";
  const body = document.createElement("div");
  body.className = "body";
  body.textContent = _("Diagnosing %(name)s …", { name: file.name });
  pending.appendChild(body);
  return pending;
}

// A visit (several leaves of one field): the first photo starts it, the others join it one by one,
// and the visit's one answer, re-computed by the server after each photo, replaces the last.
async function diagnose(file, pending, visit) {
  const body = pending.firstChild;
  const form = new FormData();
  form.append("files", file, file.name);
  if (visit) form.append("visit", visit.id || "new");
  try {
    const response = await fetch("/", { method: "POST", body: form, headers: { Accept: "text/html" } });
    const text = await response.text();
    const page = new DOMParser().parseFromString(text, "text/html");
    const answer = page.querySelector("#visit > .card");
    if (visit && answer) {
      visit.id = answer.dataset.visit;
      document.getElementById("visit").replaceChildren(document.adoptNode(answer));
    }
    const cards = page.querySelectorAll("#results > .card");
    if (cards.length === 0) {
      let reason = _("the server answered %(status)s", { status: response.status });
      try { reason = JSON.parse(text).error || reason; } catch (ignored) { /* not JSON */ }
      throw new Error(reason);
    }
    pending.replaceWith(...Array.from(cards, (card) => document.adoptNode(card)));
  } catch (error) {
    pending.className = "card error";
    body.textContent = _("%(name)s: not diagnosed.", { name: file.name }) + " " + error.message;
  }
}

function setUpDiagnose() {
  const input = document.getElementById("photo-input");
  const zone = document.getElementById("drop-zone");
  const results = document.getElementById("results");
  if (!input || !zone || !results) return;
  const toggle = document.getElementById("visit-toggle");
  let visit = null; // the visit being built while the box stays ticked
  toggle?.addEventListener("change", () => { visit = null; });
  const send = async (files) => {
    const chosen = Array.from(files);
    const pendings = chosen.map(placeholder);
    results.prepend(...pendings);
    if (!toggle?.checked) {
      chosen.forEach((file, i) => diagnose(file, pendings[i], null));
      return;
    }
    visit = visit || {};
    for (const [i, file] of chosen.entries()) await diagnose(file, pendings[i], visit); // one after another
  };
  input.addEventListener("change", () => { send(input.files); input.value = ""; });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => { event.preventDefault(); send(event.dataTransfer.files); });
}

// Grad-CAM: swap the thumbnail for the overlay and back.
document.addEventListener("click", (event) => {
  const button = event.target.closest(".toggle-gradcam");
  if (!button) return;
  const img = button.closest(".card").querySelector("img");
  const showing = img.getAttribute("src") === img.dataset.gradcam;
  img.src = showing ? img.dataset.photo : img.dataset.gradcam;
  button.textContent = showing ? _("Show where the model looked") : _("Show the photo");
});

// Review: the token stays in this tab (sessionStorage) and goes as a bearer header.
function setUpReview() {
  const tokenInput = document.getElementById("review-token");
  if (!tokenInput) return;
  tokenInput.value = sessionStorage.getItem("paddyclf-review-token") || "";
  tokenInput.addEventListener("input", () => sessionStorage.setItem("paddyclf-review-token", tokenInput.value));
  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form.review");
    if (!form) return;
    event.preventDefault();
    const message = form.querySelector(".review-message");
    const label = form.querySelector("select").value;
    message.className = "review-message";
    message.textContent = _("saving …");
    try {
      const response = await fetch("/api/v1/diagnoses/" + form.dataset.id + "/review", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + tokenInput.value },
        body: JSON.stringify({ label }),
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || _("error %(status)s", { status: response.status }));
      const shown = answer.reviewed_name || answer.reviewed_label;
      form.closest(".card").querySelector(".review-state").textContent = _("reviewed: %(label)s", { label: shown });
      message.textContent = _("saved");
    } catch (error) {
      message.className = "review-message failed";
      message.textContent = error.message;
    }
  });
}

setUpDiagnose();
setUpReview();

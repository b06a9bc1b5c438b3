// paddyclf: a little plain JavaScript over server-rendered pages (the forms also work without it).
"use strict";
document.documentElement.classList.add("js");

// Diagnose: upload each photo on its own request and show the card the server renders for it,
// in place of a placeholder (the newest selection on top, in the order the photos were chosen).
function placeholder(file) {
  const pending = document.createElement("article");
  pending.className = "card pending";
  const body = document.createElement("div");
  body.className = "body";
  body.textContent = "Diagnosing " + file.name + " …";
  pending.appendChild(body);
  return pending;
}

async function diagnose(file, pending) {
  const body = pending.firstChild;
  const form = new FormData();
  form.append("files", file, file.name);
  try {
    const response = await fetch("/", { method: "POST", body: form, headers: { Accept: "text/html" } });
    const text = await response.text();
    const cards = new DOMParser().parseFromString(text, "text/html").querySelectorAll("#results > .card");
    if (cards.length === 0) {
      let reason = "the server answered " + response.status;
      try { reason = JSON.parse(text).error || reason; } catch (ignored) { /* not JSON */ }
      throw new Error(reason);
    }
    pending.replaceWith(...Array.from(cards, (card) => document.adoptNode(card)));
  } catch (error) {
    pending.className = "card error";
    body.textContent = file.name + ": not diagnosed. " + error.message;
  }
}

function setUpDiagnose() {
  const input = document.getElementById("photo-input");
  const zone = document.getElementById("drop-zone");
  const results = document.getElementById("results");
  if (!input || !zone || !results) return;
  const send = (files) => {
    const chosen = Array.from(files);
    const pendings = chosen.map(placeholder);
    results.prepend(...pendings);
    chosen.forEach((file, i) => diagnose(file, pendings[i]));
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
  button.textContent = showing ? "Show where the model looked" : "Show the photo";
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
    message.textContent = "saving …";
    try {
      const response = await fetch("/api/v1/diagnoses/" + form.dataset.id + "/review", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + tokenInput.value },
        body: JSON.stringify({ label }),
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || "error " + response.status);
      form.closest(".card").querySelector(".review-state").textContent = "reviewed: " + answer.reviewed_label;
      message.textContent = "saved";
    } catch (error) {
      message.className = "review-message failed";
      message.textContent = error.message;
    }
  });
}

setUpDiagnose();
setUpReview();

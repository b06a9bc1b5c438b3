// paddyclf's service worker: the diagnose page opens, and diagnoses, without a network.
//
// The server serves this file at /sw.js after one line that sets PADDYCLF_RELEASE (a hash of the
// page's assets: a new paddyclf is a new worker and a new cache) and PADDYCLF_ASSETS (the scripts,
// the styles, the icons and ONNX Runtime Web). Installing it keeps those, the diagnose page and the
// served model. Then:
//   - pages and /browser/model.json: the network first (a fresh page when online), the kept copy
//     when the server cannot be reached within a few seconds;
//   - /static/ and /browser/model.onnx?sha256=...: the kept copy first (a model's URL names its
//     hash, so a new model is a new URL; the old one is dropped when the new one is kept);
//   - everything else (the API, photos, uploads): the network, as if there were no worker.
/* global PADDYCLF_RELEASE, PADDYCLF_ASSETS */
"use strict";
const CACHE = "paddyclf-" + PADDYCLF_RELEASE;
const NETWORK_TIMEOUT_MS = 4000;

async function keepModel(cache) {
  const response = await fetch("/browser/model.json", { cache: "no-cache" });
  if (!response.ok) return; // this server runs a model browsers cannot: its pages use the API
  const metadata = await response.clone().json();
  await cache.put("/browser/model.json", response);
  await cache.add(`/browser/model.onnx?sha256=${metadata.sha256}`);
}

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      await cache.addAll(["/", ...PADDYCLF_ASSETS]);
      await keepModel(cache);
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith("paddyclf-") && name !== CACHE) await caches.delete(name);
      }
      await self.clients.claim();
    })(),
  );
});

function withTimeout(promise, ms) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), ms))]);
}

async function networkFirst(request, fallbacks) {
  const cache = await caches.open(CACHE);
  try {
    const response = await withTimeout(fetch(request), NETWORK_TIMEOUT_MS);
    if (response.ok) await cache.put(request, response.clone());
    return response;
  } catch (offline) {
    for (const key of [request, ...fallbacks]) {
      const kept = await cache.match(key, { ignoreVary: true });
      if (kept) return kept;
    }
    const kept = await cache.match(request, { ignoreSearch: true, ignoreVary: true });
    if (kept) return kept;
    throw offline;
  }
}

async function cacheFirst(request) {
  const cache = await caches.open(CACHE);
  const kept = await cache.match(request, { ignoreVary: true });
  if (kept) return kept;
  const response = await fetch(request);
  if (response.ok) {
    if (new URL(request.url).pathname === "/browser/model.onnx") {
      for (const old of await cache.keys()) {
        if (new URL(old.url).pathname === "/browser/model.onnx") await cache.delete(old);
      }
    }
    await cache.put(request, response.clone());
  }
  return response;
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    event.respondWith(networkFirst(request, ["/"]));
  } else if (url.pathname === "/browser/model.json" || url.pathname === "/manifest.webmanifest") {
    event.respondWith(networkFirst(request, []));
  } else if (url.pathname.startsWith("/static/") || url.pathname === "/browser/model.onnx") {
    event.respondWith(cacheFirst(request));
  }
});

// Diagnoses made in the browser wait here (IndexedDB, with their photo) until the server has them.
//
// Each one is sent to POST /api/v1/sync with this phone's device id (kept with the item): the server
// keys it by (device id, sha256 of the photo), so a retry after a lost reply stores nothing twice.
// An item leaves the outbox only once the server has answered 200. The server's own refusal of the
// photo or the report (413, 415, 422 with its JSON error) is kept, marked, and not retried; anything
// else (no network, a 5xx, a proxy's or a captive portal's page) is tried again later, and one item
// that keeps failing does not hold up the others.
const DB_NAME = "paddyclf";
const STORE = "outbox";
const DEVICE_KEY = "paddyclf-device-id";

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

const REFUSALS = [413, 415, 422]; // what paddyclf's sync answers when the photo or the report is bad

let database = null;
function open() {
  if (!database) {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: "key", autoIncrement: true });
    database = request(req).catch((error) => {
      database = null; // try again next time (a private window may refuse IndexedDB once)
      throw error;
    });
  }
  return database;
}

async function transaction(mode, work) {
  const db = await open();
  const tx = db.transaction(STORE, mode);
  const result = await work(tx.objectStore(STORE));
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
  return result;
}

// A random id this browser keeps (crypto.getRandomValues works on plain HTTP too, randomUUID does not)
export function deviceId() {
  let id = localStorage.getItem(DEVICE_KEY);
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    id = "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem(DEVICE_KEY, id);
  }
  return id;
}

// Keep a diagnosis until it is synced; resolves to its key once the photo is on the phone's disk
export function keep(item) {
  return transaction("readwrite", (store) => request(store.add({ ...item, device: deviceId() })));
}

// Ask the browser not to evict the outbox (and the offline page) when the phone runs short of space
export function keepForGood() {
  navigator.storage?.persist?.().catch(() => false);
}

export function pending() {
  return transaction("readonly", (store) => request(store.getAll()));
}

function forget(key) {
  return transaction("readwrite", (store) => request(store.delete(key)));
}

// change a kept item, if it is still there (another tab may have sent it meanwhile)
function update(item, change) {
  return transaction("readwrite", async (store) => {
    const current = await request(store.get(item.key));
    if (current) await request(store.put({ ...current, ...change }));
  });
}

function form(item) {
  const body = new FormData();
  body.append("file", item.photo, item.name);
  body.append("device_id", item.device || deviceId());
  body.append("device_status", item.status);
  body.append("device_top_k", JSON.stringify(item.top_k));
  body.append("device_model_sha256", item.model_sha256);
  body.append("diagnosed_at", item.diagnosed_at);
  if (item.visit) body.append("device_visit", item.visit);
  return body;
}

// A reply that is paddyclf's refusal of this item (its JSON error), not a proxy's or a portal's page
async function refusal(response) {
  if (!REFUSALS.includes(response.status)) return null;
  try {
    return (await response.json()).error || null;
  } catch (notJson) {
    return null;
  }
}

// Send what waits, oldest first. onSynced(item, record) for each one the server now has,
// onRefused(item, reason) for each it refused. Resolves to {sent, waiting, refused}; stops at the
// first network failure (the rest waits too).
export async function sync(onSynced, onRefused) {
  const counts = { sent: 0, waiting: 0, refused: 0 };
  const items = await pending();
  for (const [i, item] of items.entries()) {
    if (item.refused) {
      counts.refused += 1;
      continue;
    }
    let response;
    try {
      response = await fetch("/api/v1/sync", { method: "POST", body: form(item), headers: { Accept: "application/json" } });
    } catch (offline) {
      counts.waiting += items.slice(i).filter((x) => !x.refused).length;
      return counts;
    }
    let record = null;
    if (response.ok) {
      try { record = await response.json(); } catch (notJson) { /* a portal's page with a 200 */ }
    }
    if (record && record.id) {
      await forget(item.key);
      counts.sent += 1;
      onSynced?.(item, record);
      continue;
    }
    const reason = await refusal(response);
    if (reason) {
      await update(item, { refused: reason });
      counts.refused += 1;
      onRefused?.(item, reason);
    } else {
      await update(item, { attempts: (item.attempts || 0) + 1 });
      counts.waiting += 1; // tried again at the next round; the next items go now
    }
  }
  return counts;
}

// A diagnosis made in the browser, drawn as the server's templates draw one (_card.html): the same
// classes, the same words (from <script id="wording">), so the page reads the same online or not.
import { LANGUAGE, WORDING, _, fill } from "./messages.js";
import { OK } from "./model.js";

const PERCENT = new Intl.NumberFormat(LANGUAGE, { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
const WHEN = new Intl.DateTimeFormat(LANGUAGE, { dateStyle: "short", timeStyle: "short" });

// paddyclf.i18n.percent: to 0.1%, never "100.0%" or "0.0%"
export function percent(p) {
  if (p >= 0.9995) return fill(WORDING.over, { percent: PERCENT.format(0.999) });
  if (p > 0 && p < 0.0005) return fill(WORDING.under, { percent: PERCENT.format(0.001) });
  return PERCENT.format(p);
}

export function dateTime(date) {
  return WHEN.format(date);
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// a class name that wraps between its words on a phone (the templates' `breakable` filter)
function breakable(text) {
  const parts = String(text).split("_");
  return parts.flatMap((part, i) => (i < parts.length - 1 ? [part + "_", element("wbr")] : [part]));
}

export function className(label) {
  return WORDING.class_names?.[label] || label;
}

// the --top-k most probable classes, best first: [{label, probability}]
export function topK(probabilities, classes, k = WORDING.top_k || 3) {
  return probabilities
    .map((probability, i) => ({ label: classes[i], probability }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, k);
}

function verdictNodes(status, top) {
  const text = WORDING.verdicts[status] || WORDING.verdicts.unsure;
  const best = top[0];
  const headline = fill(text.headline, { label: className(best.label), percent: percent(best.probability) });
  return [
    element("p", { class: "verdict" }, element("span", { class: "badge" }, text.badge), " ", element("strong", {}, ...breakable(headline))),
    text.detail ? element("p", { class: "detail" }, text.detail) : null,
    text.tips.length ? element("ul", { class: "tips" }, ...text.tips.map((tip) => element("li", {}, tip))) : null,
    element(
      "ol",
      { class: "top-k" },
      ...top.map((t) =>
        element(
          "li",
          {},
          element("span", { class: "label" }, ...breakable(className(t.label))),
          element("progress", { max: "1", value: String(t.probability) }, percent(t.probability)),
          element("span", { class: "percent" }, percent(t.probability)),
        ),
      ),
    ),
  ];
}

function list(items) {
  return element("ul", {}, ...items.map((item) => element("li", {}, item)));
}

function knowledgeCard(card) {
  const sources = card.sources.flatMap((s, i) => [
    ...(i ? ["; "] : []),
    element("a", { href: s.url, rel: "noopener noreferrer", target: "_blank" }, s.title),
  ]);
  return element(
    "section",
    { class: "knowledge" },
    element("h4", {}, card.name, card.synonyms.length ? element("span", { class: "synonyms" }, ` (${card.synonyms.join(", ")})`) : null),
    element("h5", {}, _("Check by eye")),
    list(card.signs),
    element("h5", {}, _("What to do now")),
    list(card.act_now),
    card.chemical ? element("p", { class: "chemical" }, card.chemical + " ", element("strong", {}, card.label_warning)) : null,
    element("h5", {}, _("When to call the extension service")),
    element("p", {}, card.call_extension),
    element("p", { class: "sources" }, _("Source:") + " ", ...sources),
  );
}

// an answer's advice: the operator's --class-info, else the built-in card
function whatToDo(status, label) {
  if (status !== OK) return [];
  const info = (WORDING.class_info?.[label] || []).map((item) =>
    element("section", { class: "class-info" }, item.heading ? element("h4", {}, item.heading) : null, element("p", {}, item.text)),
  );
  const card = WORDING.cards?.[label];
  return [...info, card ? knowledgeCard(card) : null];
}

// diagnosis: {name, photoUrl, status, probabilities, diagnosedAt}; classes: the model's labels
export function photoCard(diagnosis, classes) {
  const top = topK(diagnosis.probabilities, classes);
  const meta = element(
    "p",
    { class: "meta" },
    element("span", { class: "record" }, _("diagnosed on this phone")),
    " · ",
    element("time", { datetime: diagnosis.diagnosedAt.toISOString() }, dateTime(diagnosis.diagnosedAt)),
    " · ",
    element("span", { class: "sync-state" }, _("waiting to be sent to the server")),
  );
  return element(
    "article",
    { class: `card status-${diagnosis.status} in-browser` },
    element("figure", {}, element("img", { src: diagnosis.photoUrl, alt: _("photo") + " " + diagnosis.name, "data-photo": diagnosis.photoUrl })),
    element(
      "div",
      { class: "body" },
      element("h3", { class: "file" }, diagnosis.name),
      ...verdictNodes(diagnosis.status, top),
      ...whatToDo(diagnosis.status, top[0].label),
      meta,
    ),
  );
}

// The card, once the server has the diagnosis: its number, and Grad-CAM when the server draws it
export function markSynced(card, record) {
  card.dataset.id = record.id;
  card.querySelector(".record").textContent = `#${record.id}`;
  card.querySelector(".sync-state").textContent = _("sent to the server");
  if (record.gradcam_url && !card.querySelector(".toggle-gradcam")) {
    const img = card.querySelector("img");
    img.dataset.gradcam = record.gradcam_url;
    const button = element("button", { type: "button", class: "toggle-gradcam" }, _("Show where the model looked"));
    card.querySelector(".meta").before(button);
  }
}

export function markUnkept(card, reason) {
  card.querySelector(".sync-state").textContent = _("not kept on this phone, so not sent: %(reason)s", { reason });
}

export function markRefused(card, reason) {
  card.querySelector(".sync-state").textContent = _("the server refused it: %(reason)s", { reason });
}

// visit: combineVisit's answer
export function visitCard(visit) {
  const top = topK(visit.probabilities, visit.classes);
  const title = visit.photos === 1 ? _("Field visit: one answer from one photo") : _("Field visit: one answer from %(count)s photos", { count: visit.photos });
  return element(
    "article",
    { class: `card visit status-${visit.status} in-browser` },
    element(
      "div",
      { class: "body" },
      element("h3", { class: "file" }, title),
      ...verdictNodes(visit.status, top),
      element(
        "p",
        { class: "meta" },
        _("%(accepted)s of %(total)s photos looked like the training photos and voted.", { accepted: visit.accepted, total: visit.photos }),
      ),
      ...whatToDo(visit.status, top[0].label),
    ),
  );
}

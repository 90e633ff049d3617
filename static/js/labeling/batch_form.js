// New-batch page: the chosen spec's categories as checkboxes, the contract price of the
// chosen vendor, spec and kind as a hint, and how many images the filter matches (GET
// /batches/new/matches/). The server renders the same on a refused form; this keeps them
// current as the choices change. Plain ES module, no build step, no inline script (CSP).

import { renderCategoryBoxes, tickedCategories } from "../category_boxes.js";

const config = JSON.parse(document.getElementById("batch-form-config").textContent);
const form = document.getElementById("batch-form");
const specSelect = document.getElementById("id_spec");
const vendorSelect = document.getElementById("id_vendor");
const kindSelect = document.getElementById("id_kind");
const sourceSelect = document.getElementById("id_source");
const onlyUnlabeled = document.getElementById("id_only_unlabeled");
const quantityInput = document.getElementById("id_quantity");
const categoryBox = document.getElementById("batch-categories");
const priceHint = document.getElementById("price-hint");
const matches = document.getElementById("batch-matches");

function renderCategories() {
  renderCategoryBoxes(categoryBox, config.categories[specSelect.value] || [], Boolean(specSelect.value));
}

// The same lines as labeling/views.py `_price_hint`.
function renderPriceHint() {
  if (!specSelect.value || !vendorSelect.value) {
    priceHint.textContent = "Choose a spec and a vendor to see whether a contract prices the batch.";
    return;
  }
  const contract = config.contracts[`${specSelect.value}:${vendorSelect.value}`];
  if (!contract) {
    priceHint.textContent = "No contract between this vendor and spec: give a unit price.";
    return;
  }
  const price = contract.prices[kindSelect.value] || contract.prices.full;
  priceHint.textContent = `Contract price: ${price} ${contract.currency} per task; leave the price empty to use it.`;
}

let pending = null; // the count request in flight, aborted when the filter changes again
let timer = null;

function plural(n, one, many) {
  return n === 1 ? one : many;
}

async function countMatches() {
  if (pending) pending.abort();
  if (!specSelect.value) {
    matches.textContent = "";
    return;
  }
  const params = new URLSearchParams({ spec: specSelect.value, only_unlabeled: onlyUnlabeled.checked ? "1" : "0" });
  for (const slug of tickedCategories(categoryBox)) params.append("categories", slug);
  if (sourceSelect.value) params.set("source", sourceSelect.value);
  const controller = new AbortController();
  pending = controller;
  matches.textContent = "Counting matching images…";
  try {
    const response = await fetch(`${config.matchesUrl}?${params}`, {
      signal: controller.signal, credentials: "same-origin", headers: { Accept: "application/json" },
    });
    const body = await response.json();
    if (!response.ok) {
      matches.textContent = Object.values(body).flat().join(" ");
      return;
    }
    const n = body.count;
    let text = `${body.more ? "More than " : ""}${n} ${plural(n, "image matches", "images match")} the filter.`;
    const asked = parseInt(quantityInput.value, 10);
    if (n === 0) text += " A batch needs at least one.";
    else if (asked > 0 && asked > n && !body.more) {
      text += ` The batch would get ${n} ${plural(n, "task", "tasks")}, fewer than the ${asked} asked for.`;
    }
    matches.textContent = text;
  } catch (error) {
    if (error.name !== "AbortError") matches.textContent = "Could not count the matching images.";
  } finally {
    if (pending === controller) pending = null;
  }
}

function countSoon() {
  clearTimeout(timer);
  timer = setTimeout(countMatches, 150);
}

specSelect.addEventListener("change", () => { renderCategories(); renderPriceHint(); countSoon(); });
vendorSelect.addEventListener("change", renderPriceHint);
kindSelect.addEventListener("change", renderPriceHint);
categoryBox.addEventListener("change", countSoon);
sourceSelect.addEventListener("change", countSoon);
onlyUnlabeled.addEventListener("change", countSoon);
quantityInput.addEventListener("input", countSoon);

// A spec chosen by the server (?spec=, or a form sent back) or restored by the browser.
if (specSelect.value && !categoryBox.querySelector("input[name=categories]") &&
    (config.categories[specSelect.value] || []).length) {
  renderCategories();
}
renderPriceHint();
countSoon();
form.dataset.ready = "1";

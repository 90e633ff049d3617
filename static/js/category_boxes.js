// The chosen spec's categories as checkboxes inside a <fieldset> (its <legend> kept), shared by
// the upload page and the new-batch page so both read and behave alike. Plain ES module.

function hint(text) {
  const span = document.createElement("span");
  span.className = "muted";
  span.textContent = text;
  return span;
}

/**
 * Fill `fieldset` with one checkbox (name "categories", value = slug) per category of `cats`.
 * `specChosen` false shows "Choose a spec first."; a spec without categories says so. Ticks
 * survive a change of spec where the other spec has a kind of the same slug.
 */
export function renderCategoryBoxes(fieldset, cats, specChosen) {
  const ticked = new Set([...fieldset.querySelectorAll("input[name=categories]:checked")].map((b) => b.value));
  fieldset.replaceChildren(fieldset.querySelector("legend"));
  if (!specChosen) {
    fieldset.append(hint("Choose a spec first."));
    return;
  }
  if (!cats.length) fieldset.append(hint("This spec has no category."));
  for (const cat of cats) {
    const label = document.createElement("label");
    label.className = "check";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.name = "categories";
    box.value = cat.slug;
    box.checked = ticked.has(cat.slug);
    label.append(box, " " + cat.name);
    fieldset.append(label);
  }
}

/** The slugs ticked in `fieldset`, in page order. */
export function tickedCategories(fieldset) {
  return [...fieldset.querySelectorAll("input[name=categories]:checked")].map((b) => b.value);
}

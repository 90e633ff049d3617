// Renders every <span class="math" data-latex=...> produced by guides.rendering with KaTeX
// (loaded before this file by the katex_assets tag).
document.querySelectorAll("span.math[data-latex]").forEach((el) => {
  try { katex.render(el.dataset.latex, el, { displayMode: el.dataset.display === "true", throwOnError: false }); }
  catch (e) { el.title = String(e); }
});

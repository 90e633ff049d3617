// Behaviour every page shares, wired from data- attributes so that templates need no inline
// script or on*="..." handler (the Content-Security-Policy allows scripts from our files only):
//   <select data-autosubmit>        submits its form when the choice changes
//   <form data-confirm="Question?"> asks before it is sent; Cancel keeps it unsent
// Listeners sit on the document, so content added later behaves the same.
document.addEventListener("change", (event) => {
  const field = event.target.closest ? event.target.closest("[data-autosubmit]") : null;
  if (field && field.form) field.form.submit();
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) event.preventDefault();
});

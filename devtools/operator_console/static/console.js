// Ask before a state change: a form with data-confirm posts with confirmed=yes once the
// operator says yes. Without JavaScript the server asks on a page instead.
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  var confirmed = form.querySelector('input[name="confirmed"]');
  if (!question || !confirmed || confirmed.value === "yes") return;
  if (window.confirm(question)) {
    confirmed.value = "yes";
  } else {
    event.preventDefault();
  }
});

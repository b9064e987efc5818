// A signing batch's live progress: ask the gateway for news every few seconds until the batch is over,
// then load the page again for its final state.
(function () {
  "use strict";
  var card = document.getElementById("batch");
  if (!card || card.dataset.finished === "true") { return; }
  var every = Math.max(0.5, parseFloat(card.dataset.poll) || 1) * 1000;
  var url = "/batches/" + encodeURIComponent(card.dataset.batch) + "/progress";
  var state = document.getElementById("state");
  var bar = document.getElementById("bar");
  var counts = document.getElementById("counts");
  var outcome = document.getElementById("outcome");

  function show(news) {
    state.textContent = news.state_name;
    state.className = "state " + news.state;
    bar.value = news.percent;
    bar.textContent = news.percent + "%";
    var total = news.records_total === null ? "…" : news.records_total;
    counts.textContent = news.records_signed + " / " + total + " hồ sơ";
    outcome.textContent = news.outcome;
  }

  function ask() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (answer) {
        if (!answer.ok) { throw new Error("HTTP " + answer.status); }
        return answer.json();
      })
      .then(function (news) {
        show(news);
        if (news.finished) { window.location.reload(); } else { window.setTimeout(ask, every); }
      })
      .catch(function () {
        outcome.textContent = "Mất kết nối với cổng; đang thử lại…";
        window.setTimeout(ask, every * 3);
      });
  }
  window.setTimeout(ask, every);
})();

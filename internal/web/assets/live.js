// The dashboard's live parts: the steps of a running deploy as they
// happen, from the agent's feed (server-sent events), and a reload of the
// page when a deploy ends, so that the banner shows what is live. Without
// JavaScript the pages work; they just do not move.
(function () {
	"use strict";
	// A page that changes by itself (a fleet rollout runs) has its
	// #refreshing part fetched again every second, until it stops
	// changing; its forms stay as they are.
	var refresh = function () {
		fetch(location.href, {credentials: "same-origin"}).then(function (r) {
			return r.text();
		}).then(function (html) {
			var doc = new DOMParser().parseFromString(html, "text/html");
			var now = doc.getElementById("refreshing");
			var here = document.getElementById("refreshing");
			if (now && here) {
				here.replaceChildren.apply(here, Array.from(now.childNodes));
			}
			if (doc.body.dataset.refresh) {
				setTimeout(refresh, 1000);
			}
		});
	};
	if (document.body.dataset.refresh && document.getElementById("refreshing")) {
		setTimeout(refresh, 1000);
	}
	var live = document.getElementById("live");
	if (!live || !window.EventSource) {
		return;
	}
	var want = live.dataset.deploy; // empty on the status page: any deploy
	var rows = live.querySelector("tbody");
	var feed = new EventSource("/feed/events?follow=1");
	var mine = function (ev) {
		if (want) {
			return String(ev.deploy_id) === want;
		}
		want = String(ev.deploy_id); // the status page follows the first it sees
		var a = live.querySelector("a.which");
		a.href = "/history/" + want;
		a.textContent = "deploy #" + want;
		return true;
	};
	var cell = function (tr, text, cls) {
		var td = document.createElement("td");
		td.textContent = text;
		if (cls) {
			td.className = cls;
		}
		tr.appendChild(td);
		return td;
	};
	feed.addEventListener("step", function (m) {
		var ev = JSON.parse(m.data);
		if (!mine(ev)) {
			return;
		}
		live.hidden = false;
		var tr;
		if (ev.phase === "start") {
			tr = document.createElement("tr");
			tr.dataset.step = ev.step;
			cell(tr, ev.step);
			cell(tr, "running", "outcome running");
			cell(tr, "");
			cell(tr, "");
			rows.appendChild(tr);
		} else {
			var running = rows.querySelectorAll("tr");
			for (var i = running.length - 1; i >= 0 && !tr; i--) {
				if (running[i].dataset.step === ev.step && !running[i].dataset.ended) {
					tr = running[i];
				}
			}
			if (!tr) {
				tr = document.createElement("tr");
				tr.dataset.step = ev.step;
				cell(tr, ev.step); cell(tr, ""); cell(tr, ""); cell(tr, "");
				rows.appendChild(tr);
			}
			tr.dataset.ended = "1";
			tr.cells[1].textContent = ev.outcome;
			tr.cells[1].className = "outcome " + ev.outcome;
			tr.cells[2].textContent = ((ev.duration_ns || 0) / 1e9).toFixed(2) + "s";
			var pre = document.createElement("pre");
			pre.textContent = ev.detail || "";
			tr.cells[3].replaceChildren(pre);
		}
		// When the host said it, and when the screen showed it: what the
		// dashboard's benchmark measures.
		tr.dataset.at = ev.time;
		tr.dataset.shown = new Date().toISOString();
	});
	feed.addEventListener("done", function (m) {
		var ev = JSON.parse(m.data);
		if (mine(ev)) {
			feed.close();
			location.reload();
		}
	});
	// A deploy that ended before the feed was open sent its end to no one:
	// look once whether the page is still current.
	feed.addEventListener("open", function () {
		if (!live.dataset.deploy) {
			return;
		}
		fetch(location.pathname, {credentials: "same-origin"}).then(function (r) {
			return r.text();
		}).then(function (html) {
			if (html.indexOf('data-deploy="' + live.dataset.deploy + '"') < 0) {
				feed.close();
				location.reload();
			}
		});
	}, {once: true});
})();

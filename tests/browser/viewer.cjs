// Drives the viewer page in headless Chromium (Debian's, through playwright-core) and reports
// what a viewer sees, as JSON on stdout, for tests/tests/browser.rs:
//   node tests/browser/viewer.cjs BASE_URL SECONDS
// - "steady": every 50 ms, the player's media time and the product cards shown;
// - "late": a second page opened 6 s in: the cards it shows in its first 3 s;
// - "resumed": a third page offline from the mug's appearance to its exit (then it
//   reconnects with last_event_id): the event ids it ends with, against the steady page's.
const { chromium } = require('playwright-core');

const [base, seconds] = [process.argv[2], Number(process.argv[3] || 40)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cards = (page) => page.evaluate(() => [...document.querySelectorAll('.card')].map((c) => c.dataset.sku));

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--autoplay-policy=no-user-gesture-required'],
  });
  const open = async () => {
    const page = await browser.newPage();
    // 5 s behind live: a loaded test machine may run the model late.
    await page.goto(`${base}/?stream=demo&delay=5000`);
    return page;
  };
  const steady = await open();
  const resumed = await open();
  const samples = [];
  const start = Date.now();
  let late = null, lateCards = [], closedAt = null, reopenedAt = null, pictures = [];
  while (Date.now() - start < seconds * 1000) {
    const t = await steady.evaluate(() => mediaNowMs());
    samples.push({ t, cards: await cards(steady) });
    if (pictures.length === 0) {
      pictures = await steady.evaluate(() => [...document.querySelectorAll('.card img')]
        .filter((i) => i.complete && i.naturalWidth > 0)
        .map((i) => ({ src: i.currentSrc, width: i.naturalWidth, height: i.naturalHeight })));
    }
    const elapsed = Date.now() - start;
    if (late === null && elapsed > 6000) late = await open();
    if (late !== null && elapsed < 13000) lateCards.push(...(await cards(late)));
    // The third page goes offline once the mug appeared, and comes back once it left: the
    // mug's `disappeared` (and what else came meanwhile) must reach it on resume.
    const kinds = await steady.evaluate(() => timeline.map((e) => `${e.kind}:${e.sku}`));
    if (closedAt === null && kinds.includes('appeared:MUG-ESP-01')) {
      closedAt = await resumed.evaluate(() => {
        window.realWebSocket = window.WebSocket;
        window.WebSocket = function () { throw new Error('offline'); };
        window.vitrineSocket.close();
        return mediaNowMs();
      });
    }
    if (closedAt !== null && reopenedAt === null && kinds.includes('disappeared:MUG-ESP-01')) {
      reopenedAt = await resumed.evaluate(() => {
        window.WebSocket = window.realWebSocket;
        connect();
        return mediaNowMs();
      });
    }
    await sleep(50);
  }
  const ids = (page) => page.evaluate(() => timeline.map((e) => e.event_id));
  const result = {
    samples,
    late: [...new Set(lateCards)],
    pictures,
    closed_at_ms: closedAt,
    reopened_at_ms: reopenedAt,
    steady_events: await ids(steady),
    steady_timeline: await steady.evaluate(() => timeline.map((e) => ({ kind: e.kind, sku: e.sku, pts_ms: e.pts_ms }))),
    resumed_events: await ids(resumed),
    resumed_status: await resumed.evaluate(() => document.getElementById('status').textContent),
  };
  process.stdout.write(JSON.stringify(result));
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });

// Drives the viewer page in headless Chromium (Debian's, through playwright-core) and reports
// what a viewer sees, as JSON on stdout, for tests/tests/browser.rs:
//   node tests/browser/viewer.cjs MODE BASE_URL SECONDS
// - sync: one page; every 50 ms its player's media time, the product cards shown, and
//   whether the video picture is the sample stream's plain grey (no product) or a photo.
// - late: a page opened once the mug is on screen in the pipeline: what it shows (the snapshot).
// - resume: two pages; the network of the second drops from the mug's appearance to its exit
//   (its WebSocket is cut, and reconnecting fails until then), and it reconnects by itself.
// - restart: one page, sampled as in sync, while the test restarts vitrine under it; with
//   the number of times the page loaded at each sample.
// - refused: a page with a bad viewer token: its status line.
const { chromium } = require('playwright-core');

const [mode, base, seconds] = [process.argv[2], process.argv[3], Number(process.argv[4] || 40)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// What a page shows now: its player's media time, the cards, and the picture.
const look = (page) => page.evaluate(() => {
  const canvas = window.probeCanvas || (window.probeCanvas = Object.assign(document.createElement('canvas'), { width: 32, height: 18 }));
  let picture = null;
  if (video.readyState >= 2) {
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(video, 0, 0, 32, 18);
    const px = ctx.getImageData(0, 0, 32, 18).data;
    // The sample stream's empty studio is plain 0x303438; a product shot is a photo.
    let far = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (Math.abs(px[i] - 0x30) + Math.abs(px[i + 1] - 0x34) + Math.abs(px[i + 2] - 0x38) > 40) far += 1;
    }
    picture = far > 32 * 18 * 0.05 ? 'photo' : 'grey';
  }
  return { t: mediaNowMs(), cards: [...document.querySelectorAll('.card')].map((c) => c.dataset.sku), picture };
});
const timelineOf = (page) => page.evaluate(() => timeline.map((e) => ({ kind: e.kind, sku: e.sku, pts_ms: e.pts_ms, event_id: e.event_id })));
const has = (timeline, kind, sku) => timeline.some((e) => e.kind === kind && e.sku === sku);

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--autoplay-policy=no-user-gesture-required'],
  });
  const open = async (delay, setup) => {
    const page = await browser.newPage();
    page.on('pageerror', (e) => console.error(`page error: ${e}`));
    if (setup) await setup(page);
    await page.goto(`${base}/?stream=demo&delay=${delay}`);
    return page;
  };
  const start = Date.now();
  const elapsed = () => Date.now() - start;
  let result;
  if (mode === 'sync') {
    // 5 s behind live: a loaded test machine may run the model late.
    const page = await open(5000);
    const samples = [];
    let pictures = [];
    while (elapsed() < seconds * 1000) {
      samples.push(await look(page));
      if (pictures.length === 0) {
        pictures = await page.evaluate(() => [...document.querySelectorAll('.card img')]
          .filter((i) => i.complete && i.naturalWidth > 0)
          .map((i) => ({ src: i.currentSrc, width: i.naturalWidth, height: i.naturalHeight })));
      }
      await sleep(50);
    }
    result = {
      samples, pictures, timeline: await timelineOf(page),
      playback: await page.evaluate(() => playback && playback.kind),
      status: await page.evaluate(() => document.getElementById('status').textContent),
    };
  } else if (mode === 'late') {
    // Open only once the pipeline has sent the mug's `appeared`: the page can learn of it
    // from the snapshot alone.
    let onScreen = [];
    while (!onScreen.includes('MUG-ESP-01') && elapsed() < seconds * 1000) {
      await sleep(200);
      const streams = await (await fetch(`${base}/v1/streams`)).json();
      onScreen = streams.streams[0].on_screen.map((p) => p.sku);
    }
    const page = await open(3000);
    const opened = elapsed();
    const samples = [];
    while (elapsed() - opened < 8000) {
      samples.push(await look(page));
      await sleep(50);
    }
    result = { on_screen_when_opened: onScreen, samples, timeline: await timelineOf(page) };
  } else if (mode === 'resume') {
    const steady = await open(3000);
    let offline = false;
    const urls = [], cut = [];
    const dropped = await open(3000, (page) => page.routeWebSocket(/\/ws/, (ws) => {
      urls.push(ws.url());
      if (offline) { ws.close({ code: 1001, reason: 'network down' }); return; }
      const server = ws.connectToServer();
      cut.push(() => { server.close(); ws.close({ code: 1001, reason: 'network down' }); });
    }));
    let wentOffline = null, cameBack = null;
    while (elapsed() < seconds * 1000) {
      const tl = await timelineOf(steady);
      // Offline once both pages have the mug's appearance: the dropped page resumes from it.
      if (wentOffline === null && has(tl, 'appeared', 'MUG-ESP-01') && has(await timelineOf(dropped), 'appeared', 'MUG-ESP-01')) {
        offline = true;
        cut.splice(0).forEach((close) => close());
        wentOffline = elapsed();
      }
      if (wentOffline !== null && cameBack === null && has(tl, 'disappeared', 'MUG-ESP-01')) {
        offline = false;
        cameBack = elapsed();
      }
      // Done once the dropped page holds what the steady one does, a few seconds after.
      if (cameBack !== null && elapsed() - cameBack > 4000) break;
      await sleep(100);
    }
    result = {
      went_offline_ms: wentOffline, came_back_ms: cameBack, urls,
      steady: await timelineOf(steady), dropped: await timelineOf(dropped),
      dropped_cards: (await look(dropped)).cards, steady_cards: (await look(steady)).cards,
    };
  } else if (mode === 'restart') {
    let loads = 0;
    const page = await browser.newPage();
    page.on('load', () => { loads += 1; });
    await page.goto(`${base}/?stream=demo&delay=3000`);
    const samples = [];
    while (elapsed() < seconds * 1000) {
      try {
        samples.push({ ...(await look(page)), loads });
      } catch (e) { /* the page is reloading */ }
      await sleep(50);
    }
    result = { samples, loads, timeline: await timelineOf(page) };
  } else if (mode === 'refused') {
    const page = await browser.newPage();
    await page.goto(`${base}/?stream=demo&token=not-a-token`);
    const status = () => page.evaluate(() => document.getElementById('status').textContent);
    // Watched for a while: the reason must stay on screen, not flash by.
    while (elapsed() < seconds * 1000 && !(await status()).startsWith('refused')) await sleep(100);
    await sleep(2000);
    result = { status: await status() };
  } else {
    throw new Error(`unknown mode ${mode}: sync, late, resume, restart or refused`);
  }
  process.stdout.write(JSON.stringify(result));
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });

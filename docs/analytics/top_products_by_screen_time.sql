-- Top products by screen time, per stream: how often and how long each was on screen.
SELECT stream_id,
       sku,
       max(title) AS title,
       count(*) AS times_shown,
       sum(duration_ms) / 1000.0 AS seconds_on_screen,
       sum(frames_seen) AS frames_seen,
       round(max(max_score), 2) AS best_score
FROM exposures
GROUP BY stream_id, sku
ORDER BY stream_id, seconds_on_screen DESC, sku;

-- What the model saw, per stream and label: frames with a box of it, and how sure it was.
SELECT stream_id,
       label,
       count(DISTINCT seq) AS frames,
       round(avg(score), 2) AS mean_score,
       count(DISTINCT track_id) AS tracks
FROM detections
WHERE score >= 0.5
GROUP BY stream_id, label
ORDER BY stream_id, frames DESC, label;

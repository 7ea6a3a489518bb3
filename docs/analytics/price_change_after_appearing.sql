-- How long after a product appeared on screen its price changed (in media time), and to what.
SELECT u.stream_id,
       u.sku,
       max(a.price) AS price_when_it_appeared,
       u.price AS new_price,
       (u.pts_ms - max(a.pts_ms)) / 1000.0 AS seconds_after_appearing
FROM product_events AS u
JOIN product_events AS a
  ON a.stream_id = u.stream_id AND a.sku = u.sku AND a.kind = 'appeared' AND a.pts_ms <= u.pts_ms
WHERE u.kind = 'updated'
GROUP BY u.stream_id, u.sku, u.price, u.pts_ms
ORDER BY u.stream_id, u.pts_ms;

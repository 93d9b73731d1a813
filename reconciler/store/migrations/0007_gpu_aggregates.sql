ALTER TABLE `nodes` ADD `gpu_readings` integer;--> statement-breakpoint
ALTER TABLE `nodes` ADD `gpu_temperature_max_c` real;--> statement-breakpoint
ALTER TABLE `nodes` ADD `gpu_utilization_sum` real;--> statement-breakpoint
ALTER TABLE `nodes` ADD `gpu_utilization_count` integer;--> statement-breakpoint
-- Nodes heartbeating before this migration: their summary from the readings already stored (the next heartbeat replaces it).
UPDATE `nodes` SET
  `gpu_readings` = (SELECT count(*) FROM `gpus` g WHERE g.`node_id` = `nodes`.`id` AND g.`last_snapshot` IS NOT NULL),
  `gpu_temperature_max_c` = (SELECT max(json_extract(g.`last_snapshot`, '$.temperatureC')) FROM `gpus` g WHERE g.`node_id` = `nodes`.`id`
    AND typeof(json_extract(g.`last_snapshot`, '$.temperatureC')) IN ('integer', 'real') AND json_extract(g.`last_snapshot`, '$.temperatureC') BETWEEN -50 AND 200),
  `gpu_utilization_sum` = (SELECT sum(json_extract(g.`last_snapshot`, '$.utilizationPct')) FROM `gpus` g WHERE g.`node_id` = `nodes`.`id`
    AND typeof(json_extract(g.`last_snapshot`, '$.utilizationPct')) IN ('integer', 'real') AND json_extract(g.`last_snapshot`, '$.utilizationPct') BETWEEN 0 AND 100),
  `gpu_utilization_count` = (SELECT count(*) FROM `gpus` g WHERE g.`node_id` = `nodes`.`id`
    AND typeof(json_extract(g.`last_snapshot`, '$.utilizationPct')) IN ('integer', 'real') AND json_extract(g.`last_snapshot`, '$.utilizationPct') BETWEEN 0 AND 100)
WHERE `last_heartbeat_at` IS NOT NULL;

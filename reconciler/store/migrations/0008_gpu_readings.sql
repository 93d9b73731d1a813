CREATE TABLE `gpu_readings` (
	`node_id` text PRIMARY KEY NOT NULL,
	`readings` text NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`node_id`) REFERENCES `nodes`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
-- The readings already stored, one array per node in GPU order (the next heartbeat replaces it).
INSERT INTO `gpu_readings` (`node_id`, `readings`, `updated_at`)
SELECT `node_id`, json_group_array(json(`last_snapshot`)), max(`updated_at`)
FROM (SELECT * FROM `gpus` WHERE `last_snapshot` IS NOT NULL AND json_valid(`last_snapshot`) ORDER BY `node_id`, `gpu_index`)
GROUP BY `node_id`;--> statement-breakpoint
ALTER TABLE `gpus` DROP COLUMN `last_snapshot`;
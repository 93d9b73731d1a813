CREATE TABLE `node_idle` (
	`node_id` text PRIMARY KEY NOT NULL,
	`pool` text NOT NULL,
	`idle_since` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `node_idle_pool` ON `node_idle` (`pool`);--> statement-breakpoint
CREATE TABLE `pool_samples` (
	`pool` text NOT NULL,
	`at` integer NOT NULL,
	`ready` integer NOT NULL,
	`utilization` real,
	`queue_depth` integer,
	PRIMARY KEY(`pool`, `at`)
);
--> statement-breakpoint
ALTER TABLE `pools` ADD `metrics_error` text;
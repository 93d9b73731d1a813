CREATE TABLE `leases` (
	`name` text PRIMARY KEY NOT NULL,
	`holder` text NOT NULL,
	`epoch` integer NOT NULL,
	`address` text,
	`acquired_at` integer NOT NULL,
	`renewed_at` integer NOT NULL
);
--> statement-breakpoint
ALTER TABLE `nodes` ADD `origin` text DEFAULT 'launched' NOT NULL;--> statement-breakpoint
ALTER TABLE `pools` ADD `launch_failures` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `pools` ADD `launch_retry_at` integer;--> statement-breakpoint
ALTER TABLE `pools` ADD `launch_error` text;--> statement-breakpoint
ALTER TABLE `pools` ADD `launch_error_kind` text;--> statement-breakpoint
ALTER TABLE `pools` ADD `launch_failing_since` integer;--> statement-breakpoint
-- A node with no launch request registered on its own: monitored, not launched.
UPDATE `nodes` SET `origin` = 'registered' WHERE `requested_at` IS NULL AND `instance_name` IS NULL;

CREATE TABLE `registrations` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`pool` text NOT NULL,
	`provider` text NOT NULL,
	`instance_type` text NOT NULL,
	`node_id` text NOT NULL,
	`launched_at` integer NOT NULL,
	`registered_at` integer NOT NULL,
	`late` integer DEFAULT false NOT NULL
);
--> statement-breakpoint
CREATE INDEX `registrations_key` ON `registrations` (`pool`,`provider`,`instance_type`,`registered_at`);--> statement-breakpoint
CREATE INDEX `registrations_pool` ON `registrations` (`pool`,`registered_at`);--> statement-breakpoint
ALTER TABLE `nodes` ADD `launched_at` integer;--> statement-breakpoint
ALTER TABLE `nodes` ADD `adopted_at` integer;--> statement-breakpoint
ALTER TABLE `nodes` ADD `served_at` integer;--> statement-breakpoint
ALTER TABLE `nodes` ADD `gpu_count` integer;--> statement-breakpoint
ALTER TABLE `pools` ADD `registration_failures` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `pools` ADD `registration_failed_at` integer;--> statement-breakpoint
ALTER TABLE `pools` ADD `registration_hold` text;--> statement-breakpoint
ALTER TABLE `pools` ADD `registration_held_at` integer;--> statement-breakpoint
-- What earlier versions did not record, from what they did: a node served from its first
-- transition into service in the audit log (every transition is audited there) ...
UPDATE `nodes` SET `served_at` = `s`.`first` FROM (
  SELECT `target`, min(`at`) AS `first` FROM `audit_log` WHERE json_extract(`details`, '$.to') IN ('ready', 'suspect') GROUP BY `target`
) AS `s` WHERE `s`.`target` = `nodes`.`id`;--> statement-breakpoint
UPDATE `nodes` SET `served_at` = `state_changed_at` WHERE `served_at` IS NULL AND `state` IN ('ready', 'suspect');--> statement-breakpoint
-- ... its launch from its launch operation, and its GPUs from what its agent registered.
UPDATE `nodes` SET `launched_at` = `o`.`at` FROM (
  SELECT `node_id`, max(`updated_at`) AS `at` FROM `operations` WHERE `kind` = 'launch' AND `state` = 'succeeded' AND `node_id` IS NOT NULL GROUP BY `node_id`
) AS `o` WHERE `o`.`node_id` = `nodes`.`id`;--> statement-breakpoint
UPDATE `nodes` SET `gpu_count` = `g`.`n` FROM (SELECT `node_id`, count(*) AS `n` FROM `gpus` GROUP BY `node_id`) AS `g` WHERE `g`.`node_id` = `nodes`.`id`;

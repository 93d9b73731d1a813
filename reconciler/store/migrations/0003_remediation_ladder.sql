ALTER TABLE `incidents` ADD `remedy` text;--> statement-breakpoint
ALTER TABLE `incidents` ADD `rebooted_at` integer;--> statement-breakpoint
ALTER TABLE `incidents` ADD `reboot_from_boot` text;--> statement-breakpoint
ALTER TABLE `incidents` ADD `back_at` integer;--> statement-breakpoint
ALTER TABLE `instances` ADD `orphan_since` integer;--> statement-breakpoint
ALTER TABLE `instances` ADD `orphan_sweeps` integer DEFAULT 0 NOT NULL;
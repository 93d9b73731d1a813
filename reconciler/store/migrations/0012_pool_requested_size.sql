ALTER TABLE `pools` ADD `requested_nodes` integer;--> statement-breakpoint
ALTER TABLE `pools` ADD `requested_by` text;
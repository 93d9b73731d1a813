CREATE TABLE `node_changes` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`node_id` text NOT NULL
);
--> statement-breakpoint
-- Written only by these triggers. The update trigger fires when a statement SETS one of the
-- columns a pass reads of every node (lifecycle/light.ts), changed or not; boot and heartbeat
-- only when the boot changed or the node was heard for the first time, so that a heartbeat
-- (which sets both) logs nothing.
CREATE TRIGGER `nodes_changed_insert` AFTER INSERT ON `nodes` BEGIN
  INSERT INTO `node_changes` (`node_id`) VALUES (NEW.`id`);
END;
--> statement-breakpoint
CREATE TRIGGER `nodes_changed_delete` AFTER DELETE ON `nodes` BEGIN
  INSERT INTO `node_changes` (`node_id`) VALUES (OLD.`id`);
END;
--> statement-breakpoint
CREATE TRIGGER `nodes_changed_update` AFTER UPDATE OF `id`, `pool`, `state`, `origin`, `incident_id`, `replacement_of`, `removal`, `cordoned_by`,
  `evaluated_event_id`, `instance_name`, `verdict`, `findings`, `consecutive_failures` ON `nodes` BEGIN
  INSERT INTO `node_changes` (`node_id`) SELECT NEW.`id` UNION SELECT OLD.`id`;
END;
--> statement-breakpoint
CREATE TRIGGER `nodes_changed_boot` AFTER UPDATE OF `boot_id`, `last_heartbeat_at` ON `nodes`
  WHEN OLD.`boot_id` IS NOT NEW.`boot_id` OR (OLD.`last_heartbeat_at` IS NULL) <> (NEW.`last_heartbeat_at` IS NULL) BEGIN
  INSERT INTO `node_changes` (`node_id`) VALUES (NEW.`id`);
END;

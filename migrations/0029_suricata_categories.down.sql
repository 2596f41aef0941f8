DROP TABLE IF EXISTS suricata_categories;

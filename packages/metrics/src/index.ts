export * from './scraped-readings.js';
